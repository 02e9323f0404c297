proxy {
  listen = "127.0.0.1:3128"
}
