category "social" {
  domains = ["tiktok.com", "facebook.com", "x.com"]
}
category "tiktok" {
  domains = ["tiktok.com"]
}

segment "wide" {
  sources = ["10.1.0.0/16"]
  default = "allow"
  rule "all-social" { # WANT: exception-wider
    action     = "allow"
    categories = ["social"]
    owner      = "comms"
    ticket     = "T-1"
    expires    = "2030-01-01"
  }
  rule "ban-tiktok" {
    action  = "deny"
    domains = ["tiktok.com"]
  }
}

segment "narrow" {
  sources = ["10.2.0.0/16"]
  default = "allow"
  rule "only-tiktok" { # near miss: narrower than the ban
    action     = "allow"
    categories = ["tiktok"]
    owner      = "comms"
    ticket     = "T-2"
    expires    = "2030-01-01"
  }
  rule "www-tiktok" { # near miss: exactly the ban (both rules below cover it); WANT: exception-metadata
    action  = "allow"
    domains = ["www.tiktok.com"]
  }
  rule "ban-social" {
    action     = "deny"
    categories = ["social"]
  }
}

segment "ports" {
  sources = ["10.3.0.0/16"]
  default = "allow"
  rule "tiktok-any-port" { # WANT: exception-wider
    action  = "allow"
    domains = ["tiktok.com"]
    owner   = "comms"
    ticket  = "T-3"
    expires = "2030-01-01"
  }
  rule "ban-tiktok-443" {
    action  = "deny"
    domains = ["tiktok.com"]
    ports   = [443]
  }
}

segment "allowlist" { # near miss: allow rules with nothing to except need no metadata
  sources = ["10.4.0.0/16"]
  default = "deny"
  rule "updates" {
    action  = "allow"
    domains = ["deb.debian.org"]
  }
  rule "unrelated-ban" {
    action  = "deny"
    domains = ["tiktok.com"]
  }
}

segment "half-documented" {
  sources = ["10.5.0.0/16"]
  default = "allow"
  rule "owner-only" { # WANT: exception-metadata
    action  = "allow"
    domains = ["x.com"]
    owner   = "comms"
  }
  rule "ban" {
    action     = "deny"
    categories = ["social"]
  }
}

segment "allowlist-final-deny" { # near miss: a final deny-everything is the default, not a ban
  sources = ["10.6.0.0/16"]
  default = "allow"
  rule "updates" {
    action  = "allow"
    domains = ["deb.debian.org"]
    ports   = [80, 443]
  }
  rule "everything-else" {
    action = "deny"
  }
}
