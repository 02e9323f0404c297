# Shadowing: true positives carry WANT, near-misses none.
category "ab" {
  files = ["ab.txt"] # a.example, b.example
}
category "a-and-c" {
  domains = ["a.example", "c.example"]
}

segment "own" {
  sources = ["10.1.0.0/16"]
  default = "allow"
  rule "deny-example" {
    action  = "deny"
    domains = ["example.com"]
  }
  rule "deny-www" { # WANT: shadowed
    action  = "deny"
    domains = ["www.example.com"]
  }
  rule "allow-sub-443" { # WANT: shadowed
    action  = "allow"
    domains = ["*.example.com"]
    ports   = [443]
  }
  rule "wild-foo" {
    action  = "deny"
    domains = ["*.foo.example"]
  }
  rule "apex-foo" { # near miss: foo.example itself is not *.foo.example
    action  = "allow"
    domains = ["foo.example"]
  }
  rule "bar-443" {
    action  = "deny"
    domains = ["bar.example"]
    ports   = [443]
  }
  rule "bar-any-port" { # near miss: the earlier rule has a narrower port set
    action  = "allow"
    domains = ["bar.example"]
  }
  rule "bar-443-again" { # WANT: shadowed
    action  = "allow"
    domains = ["api.bar.example"]
    ports   = [443]
  }
  rule "monitor-baz" {
    action  = "deny"
    monitor = true
    domains = ["baz.example"]
  }
  rule "baz" { # near miss: a monitor rule does not decide
    action  = "deny"
    domains = ["baz.example"]
  }
  rule "qux-exception" {
    action  = "allow"
    domains = ["qux.example"]
    owner   = "a"
    ticket  = "T-1"
    expires = "2030-01-01"
  }
  rule "qux-ban" { # near miss: the earlier rule expires, then this one applies
    action  = "deny"
    domains = ["qux.example"]
  }
  rule "qux-short" { # WANT: shadowed
    action  = "deny"
    domains = ["qux.example"]
    expires = "2029-01-01"
  }
  rule "ab" {
    action     = "deny"
    categories = ["ab"]
  }
  rule "a-inline" { # WANT: shadowed
    action  = "deny"
    domains = ["www.a.example"]
  }
  rule "a-and-c" { # near miss: c.example is not in ab
    action     = "deny"
    categories = ["a-and-c"]
  }
  rule "two-halves" {
    action = "deny"
    cidrs  = ["192.0.2.0/25", "192.0.2.128/25"]
  }
  rule "whole" { # WANT: shadowed
    action = "allow"
    cidrs  = ["192.0.2.0/24"]
    ports  = [443]
  }
  rule "wider-net" { # near miss: 198.51.100.0/23 is wider than the earlier /24s
    action = "allow"
    cidrs  = ["198.51.100.0/23"]
  }
  rule "u1" {
    action  = "deny"
    domains = ["u1.example"]
  }
  rule "u2" { # WANT: exception-metadata, exception-wider
    action  = "allow"
    domains = ["u2.example"]
    ports   = [80, 443]
  }
  rule "u1-and-www-u2" { # WANT: shadowed
    action  = "deny"
    domains = ["u1.example", "www.u2.example"]
    ports   = [443]
  }
  rule "u1-and-u2-8080" { # near miss: u2 does not match port 8080
    action  = "deny"
    domains = ["u1.example", "u2.example"]
    ports   = [8080]
  }
  rule "u1-and-u3" { # near miss: nothing covers u3.example
    action  = "deny"
    domains = ["u1.example", "u3.example"]
  }
  rule "net-a" {
    action = "deny"
    cidrs  = ["203.0.113.0/25"]
  }
  rule "net-b" {
    action = "deny"
    cidrs  = ["203.0.113.128/25"]
    ports  = [443]
  }
  rule "net-ab-443" { # WANT: shadowed
    action = "allow"
    cidrs  = ["203.0.113.0/24"]
    ports  = [443]
  }
  rule "net-ab-any-port" { # near miss: net-b only on 443
    action = "allow"
    cidrs  = ["203.0.113.0/24"]
  }
}

segment "catch-all" {
  sources = ["10.2.0.0/16"]
  default = "deny"
  rule "everything" { # WANT: exception-metadata, exception-wider
    action = "allow"
  }
  rule "after-everything" { # WANT: shadowed
    action  = "deny"
    domains = ["tiktok.com"]
  }
}

policy "bans" {
  rule "no-tiktok" {
    action  = "deny"
    domains = ["tiktok.com"]
  }
}

policy "only-in-allowing" {
  rule "no-tiktok-either" { # WANT: shadowed
    action  = "deny"
    domains = ["www.tiktok.com"]
  }
}

segment "allowing" {
  sources = ["10.3.0.0/16"]
  default = "allow"
  rule "tiktok-for-all" {
    action  = "allow"
    domains = ["tiktok.com"]
    owner   = "comms"
    ticket  = "T-2"
    expires = "2030-01-01"
  }
  rule "tiktok-forever" { # WANT: exception-metadata
    action  = "allow"
    domains = ["tiktok.com"]
  }
  policies = ["bans", "only-in-allowing"]
}

segment "banning" { # bans.no-tiktok decides here: not shadowed everywhere
  sources  = ["10.4.0.0/16"]
  default  = "allow"
  policies = ["bans"]
}
