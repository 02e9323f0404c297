segment "a" {
  sources = ["10.20.0.0/16"]
  default = "allow"
}
segment "b" {
  sources = ["10.20.1.2/16"] # ERROR: Two segments with one prefix
  default = "deny"
}
