# The QUIC listener of the transparent block (SPEC §10.1).
transparent {
  quic_listen = "udp/8443" # ERROR: Invalid listen address
  quic_port   = 0 # ERROR: Invalid number
}
segment "a" {
  sources = ["10.20.0.0/16"]
  default = "allow"
}
