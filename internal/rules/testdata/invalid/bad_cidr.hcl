segment "a" {
  sources = ["10.0.0.0/8", "10.300.0.0/16"] # ERROR: Invalid CIDR
  default = "allow"
  rule "r" {
    action = "deny"
    cidrs  = ["203.0.113.0/33"] # ERROR: Invalid CIDR
  }
}
