category "c" {
  files = ["../lists/bad.txt"]
}
segment "a" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}
