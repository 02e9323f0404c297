# Default config of the container image. Mount your own directory over
# /etc/egress to replace it. Listens on all addresses (the container's network
# is the boundary); accepts clients from private ranges only; denies the
# shipped social-media list. The shipped lists live in /usr/share/egress/lists.
proxy {
  listen = "0.0.0.0:3128"
}

admin {
  listen = "0.0.0.0:9090"
}

category "social-media" {
  description = "Social networks and short-video apps"
  files       = ["/usr/share/egress/lists/social-media.txt"]
}

segment "private-networks" {
  sources = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]
  default = "allow"
  rule "no-social-media" {
    action     = "deny"
    categories = ["social-media"]
  }
}
