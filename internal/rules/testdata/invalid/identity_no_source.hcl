proxy {
  listen = "127.0.0.1:3128"
}
auth {
  realm = "bad\"realm" # ERROR: Invalid realm
}
segment "ministry" {
  sources      = ["10.20.0.0/16"]
  default      = "allow"
  require_auth = true # ERROR: Segment cannot authenticate
  rule "comm" {
    action = "allow"
    groups = [ # ERROR: Rule cannot match anyone
      "communication",
      "communication", # ERROR: Duplicate name
    ]
  }
  rule "alice" {
    action = "allow"
    users  = ["alice"] # ERROR: Rule cannot match anyone
  }
}
test "t" {
  source = "10.20.0.1"
  host   = "example.com"
  expect = "allow"
  groups = ["communication"] # ERROR: Groups without a user
}
