category "c" {
  domains = ["a.example"]
}
category "c" { # ERROR: Duplicate category
  domains = ["b.example"]
}
policy "p" {
  rule "r" {
    action = "deny"
  }
  rule "r" { # ERROR: Duplicate rule
    action = "allow"
  }
}
segment "a" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}
segment "a" { # ERROR: Duplicate segment
  sources = ["10.1.0.0/16"]
  default = "allow"
}
