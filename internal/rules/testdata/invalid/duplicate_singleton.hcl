proxy {
  listen = "127.0.0.1:3128"
}
proxy { # ERROR: Duplicate proxy block
  listen = "127.0.0.1:3129"
}
segment "a" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}
