category "video" {
  domains = ["youtube.com", "netflix.com"]
}
category "games" {
  domains = ["steampowered.com", "www.youtube.com"]
}
category "tiktok" {
  domains = ["tiktok.com"]
}
category "social" {
  domains = ["tiktok.com", "facebook.com"]
}
category "news" {
  domains = ["news.example"]
}

policy "bans" {
  rule "no-games" {
    action     = "deny"
    categories = ["games"]
  }
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
  }
}

segment "s" {
  sources = ["10.1.0.0/16"]
  default = "allow"
  rule "video" { # WANT: exception-wider
    action     = "allow"
    categories = ["video"] # WANT: allow-deny-overlap
    owner      = "a"
    ticket     = "T-1"
    expires    = "2030-01-01"
  }
  rule "tiktok" {
    action     = "allow"
    categories = ["tiktok"] # near miss: tiktok is a sub-list of social
    owner      = "a"
    ticket     = "T-2"
    expires    = "2030-01-01"
  }
  rule "news" {
    action     = "allow"
    categories = ["news"] # near miss: no common name
  }
  policies = ["bans"]
}
