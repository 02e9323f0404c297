# The embedded default configuration of `egress run` without -config.
#
# It serves this machine only: clients on loopback (127.0.0.0/8, ::1) form the
# one segment, every other source is denied (unknown_source), and the shipped
# social-media category (TikTok included) is denied. Everything else is allowed.
# Copy it as a starting point: `egress run -config my.hcl`.

proxy {
  listen = "127.0.0.1:3128"
}

admin {
  listen = "127.0.0.1:9090"
}

category "social-media" {
  description = "Social networks and short-video apps (TikTok, Meta, X, Snapchat, ...)"
  files       = ["lists/social-media.txt"]
}

policy "baseline" {
  rule "no-social-media" {
    action     = "deny"
    categories = ["social-media"]
  }
}

segment "local" {
  sources  = ["127.0.0.0/8", "::1/128"]
  default  = "allow"
  policies = ["baseline"]
}

test "local clients may browse" {
  source = "127.0.0.1"
  host   = "example.com"
  expect = "allow"
}

test "TikTok is denied" {
  source = "127.0.0.1"
  host   = "www.tiktok.com"
  expect = "deny"
  rule   = "no-social-media"
}

test "other sources are denied" {
  source = "192.0.2.10"
  host   = "example.com"
  expect = "deny"
}
