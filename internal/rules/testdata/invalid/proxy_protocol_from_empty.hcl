# An empty list would refuse every connection: an error, not a silent outage.
proxy {
  proxy_protocol      = true
  proxy_protocol_from = [] # ERROR: Empty proxy_protocol_from
}
segment "a" {
  sources = ["10.20.0.0/16"]
  default = "allow"
}
