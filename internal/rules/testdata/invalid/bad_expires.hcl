segment "a" {
  sources = ["10.0.0.0/8"]
  default = "allow"
  rule "exception" {
    action  = "allow"
    domains = ["tiktok.com"]
    owner   = "comms@example.org"
    expires = "31/03/2027" # ERROR: Invalid expiry date
  }
}
