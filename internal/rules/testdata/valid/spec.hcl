# The example of SPEC §2, verbatim but for the list path.
proxy {
  listen         = "0.0.0.0:3128"
  proxy_protocol = false
}

transparent {
  https_listen   = "0.0.0.0:8443"
  http_listen    = "0.0.0.0:8080"
  https_port     = 443
  http_port      = 80
  quic_listen    = "0.0.0.0:8443"
  quic_port      = 443
  proxy_protocol = false
}

admin {
  listen = "127.0.0.1:9090"
}

tls {
  hello_timeout = "10s"
  sni_mismatch  = "deny"
  missing_sni   = "allow"
  non_tls       = "deny"
  ech           = "allow"
}

upstream {
  dial_timeout  = "10s"
  hosts         = { "intranet.example" = "10.1.2.3" }
  allow_private = []
}

log {
  format = "ecs"
  output = "stdout"
}

limits {
  max_connections = 20000
  per_source      = 512
  idle_timeout    = "5m"
}

category "social-media" {
  description = "Social networks and short-video apps"
  domains     = ["tiktok.com", "tiktokv.com", "facebook.com"]
  files       = ["../lists/social-media.txt"]
}

policy "government-baseline" {
  rule "no-social-media" {
    action     = "deny"
    categories = ["social-media"]
  }
}

segment "ministry" {
  sources  = ["10.20.0.0/16", "fd00:20::/48"]
  default  = "allow"
  policies = ["government-baseline"]
}

segment "communications" {
  sources = ["10.20.5.0/24"]
  default = "allow"
  rule "institutional-accounts" {
    action  = "allow"
    domains = ["tiktok.com", "tiktokv.com"]
    owner   = "communication@ministry.example"
    ticket  = "SEC-2023-114"
    expires = "2027-03-31"
  }
  policies = ["government-baseline"]
}

test "comms may post on TikTok" {
  source = "10.20.5.7"
  host   = "www.tiktok.com"
  expect = "allow"
}
test "ministry may not" {
  source = "10.20.9.9"
  host   = "www.tiktok.com"
  port   = 443
  expect = "deny"
  rule   = "no-social-media"
}
