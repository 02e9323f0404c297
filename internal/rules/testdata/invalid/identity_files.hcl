proxy {
  listen          = "127.0.0.1:3128"
  client_ca_file  = "nope.crt" # ERROR: TLS listener setting without tls_listen
}
auth {
  htpasswd_file = "../lists/bad.txt" # ERROR: Invalid htpasswd file
  cache_ttl     = "-1s" # ERROR: Invalid duration
  max_failures_per_minute = 0 # ERROR: Invalid number
  kerberos {
    keytab           = "missing.keytab" # ERROR: Cannot read file
    groups_from_ldap = true # ERROR: groups_from_ldap without an ldap block
  }
}
segment "s" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}
