category "social-media" {
  domains = ["tiktok.com"]
}
policy "base" {
  rule "r" {
    action     = "deny"
    categories = ["social-media", "socail-media"] # ERROR: Unknown category
  }
}
segment "a" {
  sources  = ["10.0.0.0/8"]
  default  = "allow"
  policies = ["base", "baseline"] # ERROR: Unknown policy
}
