segment "a" {
  sources = ["10.0.0.0/8"]
  default = "allow"
  rule "r" {
    action = "deny"
    domain = ["tiktok.com"] # ERROR: Unsupported argument
  }
}
