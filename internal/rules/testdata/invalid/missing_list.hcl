category "c" {
  files = ["lists/does-not-exist.txt"] # ERROR: Cannot read list file
}
segment "a" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}
