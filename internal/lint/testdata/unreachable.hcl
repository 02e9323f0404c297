category "empty" {
  files = ["empty.txt"]
}
category "one" {
  domains = ["one.example"]
}

segment "s" {
  sources = ["10.1.0.0/16"]
  default = "allow"
  rule "name-and-ip" { # WANT: unreachable
    action  = "deny"
    domains = ["example.com"]
    cidrs   = ["192.0.2.0/24"]
  }
  rule "empty-category" { # WANT: unreachable
    action     = "deny"
    categories = ["empty"]
  }
  rule "empty-and-one" { # near miss: one.example still matches
    action     = "deny"
    categories = ["empty", "one"]
  }
  rule "ports-empty" {
    action  = "deny"
    domains = ["two.example"]
    ports   = [] # WANT: empty-matcher
  }
  rule "name-and-port" { # near miss: a name and a port is fine
    action  = "deny"
    domains = ["three.example"]
    ports   = [443]
  }
  rule "ip-and-port" {
    action = "deny"
    cidrs  = ["198.51.100.0/24"]
    ports  = [443]
  }
}
