# The test clock is 2026-06-01T00:00:00Z.
segment "s" {
  sources = ["10.1.0.0/16"]
  default = "deny"
  rule "old" {
    action  = "allow"
    domains = ["a.example"]
    expires = "2026-05-01" # WANT: expired
  }
  rule "soon" {
    action  = "allow"
    domains = ["b.example"]
    expires = "2026-06-15" # WANT: expires-soon
  }
  rule "later" {
    action  = "allow"
    domains = ["c.example"]
    expires = "2026-07-15" # near miss: 44 days
  }
  rule "exactly-30" {
    action  = "allow"
    domains = ["d.example"]
    expires = "2026-07-01T00:00:00Z" # WANT: expires-soon
  }
}
