# proxy_protocol = true needs the load balancers it trusts (SPEC §10.4).
proxy {
  listen         = "0.0.0.0:3128"
  proxy_protocol = true # ERROR: Missing proxy_protocol_from
}
transparent {
  https_listen        = "0.0.0.0:8443"
  proxy_protocol      = true
  proxy_protocol_from = ["10.0.0.0/24", "10.0.0.300", "lb.example"] # ERROR: Invalid CIDR
}
segment "a" {
  sources = ["10.20.0.0/16"]
  default = "allow"
}
