segment "s" {
  sources = ["10.1.0.0/16"]
  default = "allow"
  rule "ban" {
    action  = "deny"
    domains = ["example.com"]
  }
  rule "old-ban" { # lint:ignore shadowed kept until the 2027 audit (SEC-41)
    action  = "deny"
    domains = ["www.example.com"]
  }
  # lint:ignore shadowed the same, waived from the line above
  rule "older-ban" {
    action  = "deny"
    domains = ["api.example.com"]
  }
  rule "no-reason" { # lint:ignore shadowed
    action  = "deny"
    domains = ["mail.example.com"]
  }
  rule "typo" {
    action  = "deny"
    domains = ["typo.example"] # lint:ignore shadowd because
  }
  # lint:ignore unused-policy nothing here is unused
  rule "stale" {
    action  = "deny"
    domains = ["stale.example"]
    description = "# lint:ignore shadowed inside a string is no waiver"
  }
}
