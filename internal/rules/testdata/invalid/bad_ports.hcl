segment "a" {
  sources = ["10.0.0.0/8"]
  default = "allow"
  rule "r" {
    action = "deny"
    ports  = [443, 70000] # ERROR: Invalid port
  }
}
test "t" {
  source = "10.0.0.1"
  host   = "example.com"
  expect = "allow"
  rule   = "no-such-rule" # ERROR: Unknown rule
}
test "t2" {
  source = "not-an-ip" # ERROR: Invalid test source
  host   = "example.com"
  expect = "maybe" # ERROR: Invalid expectation
}
