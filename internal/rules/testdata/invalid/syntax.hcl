segment "a" {
  sources = ["10.0.0.0/8"
  default = "allow" # ERROR: Missing item separator
}
