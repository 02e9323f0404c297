category "c" {
  domains = ["ok.example", "bad..example", "*.also-ok.example", "exa mple.com", "foo.*.com", "10.1.2.3"] # ERROR: Invalid domain pattern
}
segment "a" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}
