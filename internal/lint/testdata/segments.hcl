segment "dept" {
  sources = ["10.0.0.0/16"]
  default = "allow"
}
segment "straddling" {
  sources = ["10.0.5.0/24", "192.168.0.0/16"] # WANT: segment-overlap
  default = "allow"
}
segment "team" { # near miss: nested inside dept
  sources = ["10.0.6.0/24"]
  default = "allow"
}
segment "halves" {
  sources = ["10.1.0.0/17", "10.1.128.0/17"]
  default = "allow"
}
segment "whole" { # near miss: the same addresses as halves, written as one prefix
  sources = ["10.1.0.0/16", "fd00:1::/48"]
  default = "allow"
}
segment "v6-team" { # near miss: nested in whole
  sources = ["fd00:1:0:5::/64"]
  default = "allow"
}
segment "v4-nested-v6-own" { # near miss: nested in dept for IPv4, its own IPv6 range
  sources = ["10.0.7.0/24", "fd00:99::/48"]
  default = "allow"
}
segment "both-ways" { # each partly inside the other: reported on the later one
  sources = ["10.2.0.0/16", "10.3.1.0/24"]
  default = "allow"
}
segment "other-way" {
  sources = ["10.2.1.0/24", "10.3.0.0/16"] # WANT: segment-overlap
  default = "allow"
}
