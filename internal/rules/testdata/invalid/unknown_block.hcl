proxie {  # ERROR: Unsupported block type
  listen = "127.0.0.1:3128"
}
