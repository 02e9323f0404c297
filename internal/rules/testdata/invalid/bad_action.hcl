segment "a" {
  sources = ["10.0.0.0/8"]
  default = "permit" # ERROR: Invalid default
  rule "r" {
    action = "block" # ERROR: Invalid action
  }
}
tls {
  sni_mismatch = "drop" # ERROR: Invalid action
}
