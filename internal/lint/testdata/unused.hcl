category "used" {
  domains = ["a.example"]
}
category "unused" { # WANT: unused-category
  domains = ["b.example"]
}
category "only-in-unused-policy" { # near miss: used by a rule; its policy is reported
  domains = ["c.example"]
}
policy "listed" {
  rule "r" {
    action     = "deny"
    categories = ["used"]
  }
}
policy "never-listed" { # WANT: unused-policy
  rule "r2" {
    action     = "deny"
    categories = ["only-in-unused-policy"]
  }
}
segment "s" {
  sources  = ["10.1.0.0/16"]
  default  = "allow"
  policies = ["listed"]
}
