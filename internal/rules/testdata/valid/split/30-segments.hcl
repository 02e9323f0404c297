segment "office" {
  sources = ["192.168.0.0/16"]
  default = "allow"
  rule "no-games" {
    action     = "deny"
    categories = ["games"] # declared in another file of the directory
  }
}
test "games denied" {
  source = "192.168.1.1"
  host   = "candycrushsaga.com"
  expect = "deny"
}
