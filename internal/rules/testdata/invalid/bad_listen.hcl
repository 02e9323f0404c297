proxy {
  listen = "localhost" # ERROR: Invalid listen address
}
admin {
  listen = "0.0.0.0:99999" # ERROR: Invalid listen address
}
log {
  format = "json" # ERROR: Invalid log format
  output = "kafka://x" # ERROR: Invalid log output
}
segment "a" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}
