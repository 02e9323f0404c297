segment "a" { # ERROR: Missing required argument
  sources = ["10.0.0.0/8"]
}
