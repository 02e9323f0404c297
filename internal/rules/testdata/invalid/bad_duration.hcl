tls {
  hello_timeout = "10" # ERROR: Invalid duration
}
upstream {
  dial_timeout = "-5s" # ERROR: Invalid duration
}
limits {
  idle_timeout = "five minutes" # ERROR: Invalid duration
}
segment "a" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}
