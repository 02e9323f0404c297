# Example: a ministry's egress policy, after the 2023 government decisions.
#
# In 2023 several governments (the European Commission and Council, the United
# States, Canada, the United Kingdom, France, ...) banned TikTok on official
# devices and, in several cases, on government networks; France extended the ban
# to "recreational" apps (games, streaming) on the devices of its civil servants,
# with exceptions for the teams that run institutional accounts. This file
# expresses that decision for one ministry:
#
#   ministry        all staff networks: TikTok, social media, recreational apps and
#                   public DNS-over-HTTPS denied; everything else allowed.
#   communications  the communication team (inside the ministry's range, longer
#                   prefix wins): may use TikTok and social media for institutional
#                   accounts, by a documented, expiring exception.
#                   The same exception by identity: on the ministry segment, rule
#                   "institutional-tiktok-by-identity" allows TikTok to the group
#                   "communication", wherever its members sit. Devices identify with
#                   a client certificate from the MDM (user from the subject CN, groups
#                   from its OUs) on the TLS proxy listener (docs/identity.md).
#   guest-wifi      visitors' own devices: default allow; TikTok denied because the
#                   ban covers government networks; other social media, streaming
#                   and DoH allowed (the devices are not ours, and DoH does not get
#                   around SNI filtering).
#   servers         default deny; only operating-system, package and container
#                   registries are reachable.
#
# Check it:   egress validate config/examples/government.hcl
#             egress test     config/examples/government.hcl
#             egress check -config config/examples/government.hcl -source 10.20.9.9 -host www.tiktok.com
# Guide:      docs/policy-guide.md. List paths below resolve against this folder.

proxy {
  listen         = "0.0.0.0:3128" # explicit proxy, pushed to devices by MDM / PAC
  proxy_protocol = false          # true behind a load balancer that sends PROXY headers,
                                  # with proxy_protocol_from = ["<the balancers' CIDR>"]

  # The same proxy behind TLS ("HTTPS proxy": PAC "HTTPS proxy.ministry.example:3129"),
  # where MDM-enrolled devices present their certificate. The files in identity/ are
  # EXAMPLES ONLY (the key is published): use your own certificate and your MDM's CA.
  tls_listen         = "0.0.0.0:3129"
  tls_cert_file      = "identity/proxy.crt"
  tls_key_file       = "identity/proxy.key"
  client_ca_file     = "identity/devices-ca.crt"
  client_cert_user   = "cn" # the device or user name
  client_cert_groups = "ou" # groups: the certificate's OUs, e.g. OU=communication
  # client_crl_file  = "identity/devices.crl" # the MDM's revocation list
}

# Identity sources for Proxy-Authorization (docs/identity.md). With Active
# Directory: Negotiate single sign-on, groups from the directory:
#
# auth {
#   kerberos { keytab = "/etc/egress/proxy.keytab" }
#   ldap {
#     url                = "ldaps://dc1.ministry.example:636"
#     bind_dn            = "CN=egress,OU=Services,DC=ministry,DC=example"
#     bind_password_file = "/etc/egress/ldap-bind.password"
#     user_base          = "DC=ministry,DC=example"
#     user_filter        = "(sAMAccountName={user})"
#     group_base         = "OU=Groups,DC=ministry,DC=example"
#     group_filter       = "(member={dn})"
#     group_attribute    = "cn"
#   }
# }

admin {
  # /metrics, /healthz, /readyz, /proxy.pac. Loopback here; to let Prometheus
  # and clients (PAC) reach it, listen on an internal address and firewall it.
  listen = "127.0.0.1:9090"
}

tls {
  hello_timeout = "10s"
  sni_mismatch  = "deny"  # CONNECT names one host, SNI another: domain fronting
  missing_sni   = "allow" # no SNI: the CONNECT host (already decided) stands alone
  non_tls       = "deny"  # a CONNECT tunnel must carry TLS
  # "deny" would block ECH GREASE, i.e. nearly every modern browser. Real ECH is
  # denied by name instead (rule "no-real-ech", category "ech").
  ech = "allow"
}

upstream {
  dial_timeout = "10s"
  hosts = {
    "intranet.ministry.example" = "10.1.2.3" # pinned, checked before DNS
  }
  allow_private = ["10.1.0.0/16"] # the intranet servers; every other private range stays refused
  # DNS: the nameservers of /etc/resolv.conf unless listed here; answers are
  # kept for their TTL (at most dns_max_ttl) in a cache of dns_cache_size names.
  # dns_servers    = ["10.1.0.53"]
  dns_cache_size = 10000
  dns_max_ttl    = "5m"
  # A DNS outage does not take the names in use down: an answer expired less
  # than this long ago is still given while the servers fail (RFC 8767).
  dns_serve_stale = "12h"
}

log {
  format = "ecs"
  output = "syslog+tls://siem.ministry.example:6514"
}

limits {
  max_connections   = 20000
  per_source        = 512
  idle_timeout      = "5m"
  shutdown_grace    = "30s"
  reload_interval   = "5s"
  enforce_on_reload = true # a reload that bans a host also closes open tunnels to it
}

# ---------------------------------------------------------------------------
# Categories: the shipped lists (tools/update-lists rebuilds them) plus one
# small inline category for a rollout.

category "tiktok" {
  description = "TikTok and the ByteDance hosts its apps use"
  files       = ["../lists/tiktok.txt"]
}

category "social-media" {
  description = "Consumer social networks, short video and messaging (TikTok included)"
  files       = ["../lists/social-media.txt"]
}

category "recreational" {
  description = "Games, game stores, video and music streaming"
  files       = ["../lists/recreational.txt"]
}

category "doh" {
  description = "Public DNS-over-HTTPS resolvers"
  files       = ["../lists/doh.txt"]
}

category "ech" {
  description = "ECH client-facing public names (real ECH hides the destination)"
  files       = ["../lists/ech.txt"]
}

category "ai-chat" {
  description = "Public generative-AI chat services (rollout under review, SEC-2026-031)"
  domains = [
    "chatgpt.com",
    "chat.openai.com",
    "claude.ai",
    "gemini.google.com",
    "chat.deepseek.com",
    "chat.mistral.ai",
    "perplexity.ai",
    "grok.com",
  ]
}

# ---------------------------------------------------------------------------
# Policies.

policy "government-baseline" {
  rule "no-tiktok" { # listed first so that events name the TikTok ban itself
    action     = "deny"
    categories = ["tiktok"]
  }
  rule "no-social-media" {
    action     = "deny"
    categories = ["social-media"]
  }
  rule "no-recreational" {
    action     = "deny"
    categories = ["recreational"]
  }
  rule "no-doh" {
    action     = "deny"
    categories = ["doh"]
  }
  rule "no-doh-ip-literals" { # https://1.1.1.1/dns-query has no name to match
    action = "deny"
    ports  = [443, 853]
    cidrs = [
      "1.1.1.1/32", "1.0.0.1/32", "2606:4700:4700::1111/128", "2606:4700:4700::1001/128", # Cloudflare
      "8.8.8.8/32", "8.8.4.4/32", "2001:4860:4860::8888/128", "2001:4860:4860::8844/128", # Google
      "9.9.9.9/32", "149.112.112.112/32", "2620:fe::fe/128", "2620:fe::9/128",            # Quad9
      "208.67.222.222/32", "208.67.220.220/32",                                           # OpenDNS
      "94.140.14.14/32", "94.140.15.15/32",                                               # AdGuard
    ]
  }
  rule "no-real-ech" {
    action     = "deny"
    categories = ["ech"]
  }
}

# A new ban is rolled out in monitor mode: the rule records what it would have
# done (egress.monitor in every event) but does not decide. Once the SIEM shows
# what it would break, remove `monitor = true` (see docs/policy-guide.md).
policy "ai-chat-rollout" {
  rule "ai-chat-rollout" {
    action     = "deny"
    monitor    = true
    categories = ["ai-chat"]
    owner      = "ssi@ministry.example"
    ticket     = "SEC-2026-031"
  }
}

# ---------------------------------------------------------------------------
# Segments. The longest matching prefix picks the segment; a source in no
# segment is denied (unknown_source).

segment "ministry" {
  sources  = ["10.20.0.0/16", "fd00:20::/48"]
  default  = "allow"

  # The communication exception by identity (SPEC §10.2): members of the group
  # "communication", identified on the explicit proxy, wherever they sit. An
  # unidentified client asking for TikTok gets 407 so that it can identify; one
  # identified outside the group is denied by the ban.
  rule "institutional-tiktok-by-identity" {
    action     = "allow"
    groups     = ["communication"]
    categories = ["tiktok"]
    owner      = "communication@ministry.example"
    ticket     = "SEC-2023-114"
    expires    = "2030-12-31"
  }
  policies = ["ai-chat-rollout", "government-baseline"]
}

segment "communications" { # exception ("dérogation") for the communication team
  sources = ["10.20.5.0/24", "fd00:20:0:5::/64"]
  default = "allow"

  rule "institutional-tiktok" {
    action     = "allow"
    categories = ["tiktok"]
    owner      = "communication@ministry.example"
    ticket     = "SEC-2023-114"
    expires    = "2030-12-31" # reviewed yearly; validate warns 30 days ahead
  }
  rule "institutional-social-media" {
    action     = "allow"
    categories = ["social-media"]
    owner      = "communication@ministry.example"
    ticket     = "SEC-2023-115"
    expires    = "2030-12-31"
  }

  # Recreational apps, DoH and real ECH stay denied for this team too.
  policies = ["ai-chat-rollout", "government-baseline"]
}

segment "guest-wifi" {
  sources = ["10.99.0.0/16", "fd00:99::/48"]
  default = "allow"

  rule "guest-no-tiktok" { # the ban covers government networks, whoever's device
    action     = "deny"
    categories = ["tiktok"]
  }
}

segment "servers" {
  sources = ["10.30.0.0/16", "fd00:30::/48"]
  default = "deny" # a server reaches only what it needs

  rule "os-and-package-updates" {
    action = "allow"
    ports  = [80, 443] # apt repositories are often plain HTTP (signed metadata)
    domains = [
      "deb.debian.org", "security.debian.org",
      "archive.ubuntu.com", "security.ubuntu.com", "esm.ubuntu.com",
      "cdn.redhat.com", "mirrors.rockylinux.org", "dl.rockylinux.org",
      "mirrors.fedoraproject.org", "dl.fedoraproject.org",
      "packages.microsoft.com",
    ]
  }
  rule "language-package-registries" {
    action = "allow"
    ports  = [443]
    domains = [
      "proxy.golang.org", "sum.golang.org",
      "pypi.org", "files.pythonhosted.org",
      "registry.npmjs.org",
      "repo.maven.apache.org", "repo1.maven.org",
      "github.com", "objects.githubusercontent.com", "codeload.github.com",
    ]
  }
  rule "container-registries" {
    action = "allow"
    ports  = [443]
    domains = [
      "registry-1.docker.io", "auth.docker.io", "production.cloudflare.docker.com",
      "ghcr.io", "pkg-containers.githubusercontent.com",
      "quay.io",
      "registry.k8s.io", "*.pkg.dev",
    ]
  }
  rule "certificates" {
    action  = "allow"
    ports   = [443]
    domains = ["acme-v02.api.letsencrypt.org"]
  }
}

# ---------------------------------------------------------------------------
# Tests: `egress test` runs them; a change that breaks the intent fails review.

# ministry: the bans
test "ministry: TikTok web denied by the TikTok ban" {
  user   = "agent-0042" # identified, not in "communication"
  groups = ["staff"]
  source = "10.20.9.9"
  host   = "www.tiktok.com"
  port   = 443
  expect = "deny"
  rule   = "no-tiktok"
}
test "ministry: TikTok video CDN denied" {
  user   = "agent-0042" # identified, not in "communication"
  groups = ["staff"]
  source = "10.20.9.9"
  host   = "v16-webapp.tiktok.com"
  expect = "deny"
  rule   = "no-tiktok"
}
test "ministry: TikTok image CDN denied" {
  user   = "agent-0042" # identified, not in "communication"
  groups = ["staff"]
  source = "10.20.9.9"
  host   = "p16-sign-va.tiktokcdn.com"
  expect = "deny"
  rule   = "no-tiktok"
}
test "ministry: ByteDance overseas API denied" {
  user   = "agent-0042" # identified, not in "communication"
  groups = ["staff"]
  source = "10.20.9.9"
  host   = "log.byteoversea.com"
  expect = "deny"
  rule   = "no-tiktok"
}
test "ministry over IPv6: TikTok denied" {
  user   = "agent-0042" # identified, not in "communication"
  groups = ["staff"]
  source = "fd00:20::1:42"
  host   = "www.tiktok.com"
  expect = "deny"
  rule   = "no-tiktok"
}
test "ministry: Facebook denied" {
  source = "10.20.9.9"
  host   = "www.facebook.com"
  expect = "deny"
  rule   = "no-social-media"
}
test "ministry: X denied" {
  source = "10.20.9.9"
  host   = "x.com"
  expect = "deny"
  rule   = "no-social-media"
}
test "ministry: Netflix denied" {
  source = "10.20.9.9"
  host   = "www.netflix.com"
  expect = "deny"
  rule   = "no-recreational"
}
test "ministry: Candy Crush denied" {
  source = "10.20.9.9"
  host   = "candycrushsaga.com"
  expect = "deny"
  rule   = "no-recreational"
}
test "ministry: Steam denied" {
  source = "10.20.9.9"
  host   = "store.steampowered.com"
  expect = "deny"
  rule   = "no-recreational"
}
test "ministry: Google DoH denied" {
  source = "10.20.9.9"
  host   = "dns.google"
  expect = "deny"
  rule   = "no-doh"
}
test "ministry: Firefox's Cloudflare DoH denied" {
  source = "10.20.9.9"
  host   = "mozilla.cloudflare-dns.com"
  expect = "deny"
  rule   = "no-doh"
}
test "ministry: DoH to an IP literal denied" {
  source = "10.20.9.9"
  host   = "1.1.1.1"
  port   = 443
  expect = "deny"
  rule   = "no-doh-ip-literals"
}
test "ministry: real ECH denied" {
  source = "10.20.9.9"
  host   = "cloudflare-ech.com"
  expect = "deny"
  rule   = "no-real-ech"
}

# ministry: ordinary work is untouched
test "ministry: gouv.fr allowed" {
  source = "10.20.9.9"
  host   = "www.gouv.fr"
  expect = "allow"
}
test "ministry: gov.uk allowed" {
  source = "10.20.9.9"
  host   = "gov.uk"
  expect = "allow"
}
test "ministry: GitHub allowed" {
  source = "10.20.9.9"
  host   = "github.com"
  expect = "allow"
}
test "ministry: LinkedIn allowed (deliberately not in social-media)" {
  source = "10.20.9.9"
  host   = "www.linkedin.com"
  expect = "allow"
}
test "ministry: Microsoft 365 sign-in allowed" {
  source = "10.20.9.9"
  host   = "login.microsoftonline.com"
  expect = "allow"
}
test "ministry: Google search allowed (dns.google is not google.com)" {
  source = "10.20.9.9"
  host   = "www.google.com"
  expect = "allow"
}
test "ministry: Amazon allowed (Prime Video is not amazon.com)" {
  source = "10.20.9.9"
  host   = "www.amazon.com"
  expect = "allow"
}
test "ministry over IPv6: ordinary host allowed" {
  source = "fd00:20::1:42"
  host   = "www.gouv.fr"
  expect = "allow"
}

# The monitor rule records but does not decide: the default decides.
test "ministry: AI chat still allowed while the rollout monitors" {
  source = "10.20.9.9"
  host   = "chatgpt.com"
  expect = "allow"
}

# ministry: the exception by identity
test "ministry: the communication group reaches TikTok" {
  source = "10.20.9.9"
  host   = "www.tiktok.com"
  user   = "phone-0107"
  groups = ["communication", "staff"]
  expect = "allow"
  rule   = "institutional-tiktok-by-identity"
}
test "ministry: unidentified TikTok request is asked to identify (407)" {
  source = "10.20.9.9"
  host   = "www.tiktok.com"
  expect = "deny"
  reason = "auth_required"
}
test "ministry: the communication group gets no other exception" {
  source = "10.20.9.9"
  host   = "www.facebook.com"
  user   = "phone-0107"
  groups = ["communication"]
  expect = "deny"
  rule   = "no-social-media"
}

# communications: the exception
test "communications: institutional TikTok account allowed" {
  source = "10.20.5.7"
  host   = "www.tiktok.com"
  expect = "allow"
  rule   = "institutional-tiktok"
}
test "communications: TikTok upload CDN allowed" {
  source = "10.20.5.7"
  host   = "v16-webapp.tiktok.com"
  expect = "allow"
  rule   = "institutional-tiktok"
}
test "communications over IPv6: TikTok allowed" {
  source = "fd00:20:0:5::7"
  host   = "www.tiktok.com"
  expect = "allow"
  rule   = "institutional-tiktok"
}
test "communications: Facebook allowed" {
  source = "10.20.5.7"
  host   = "www.facebook.com"
  expect = "allow"
  rule   = "institutional-social-media"
}
test "communications: Netflix still denied" {
  source = "10.20.5.7"
  host   = "www.netflix.com"
  expect = "deny"
  rule   = "no-recreational"
}
test "communications: DoH still denied" {
  source = "10.20.5.7"
  host   = "dns.google"
  expect = "deny"
  rule   = "no-doh"
}
test "neighbour of the communications range is ministry" {
  user   = "agent-0042" # identified, not in "communication"
  groups = ["staff"]
  source = "10.20.6.7"
  host   = "www.tiktok.com"
  expect = "deny"
  rule   = "no-tiktok"
}

# guest-wifi
test "guest-wifi: TikTok denied on a government network" {
  source = "10.99.1.20"
  host   = "www.tiktok.com"
  expect = "deny"
  rule   = "guest-no-tiktok"
}
test "guest-wifi: Facebook allowed" {
  source = "10.99.1.20"
  host   = "www.facebook.com"
  expect = "allow"
}
test "guest-wifi: Netflix allowed" {
  source = "10.99.1.20"
  host   = "www.netflix.com"
  expect = "allow"
}
test "guest-wifi: DoH allowed" {
  source = "10.99.1.20"
  host   = "dns.google"
  expect = "allow"
}
test "guest-wifi over IPv6: TikTok denied" {
  source = "fd00:99::20"
  host   = "www.tiktok.com"
  expect = "deny"
  rule   = "guest-no-tiktok"
}

# servers
test "servers: Debian security updates allowed" {
  source = "10.30.4.5"
  host   = "security.debian.org"
  port   = 80
  expect = "allow"
  rule   = "os-and-package-updates"
}
test "servers: PyPI allowed" {
  source = "10.30.4.5"
  host   = "files.pythonhosted.org"
  port   = 443
  expect = "allow"
  rule   = "language-package-registries"
}
test "servers: Docker Hub allowed" {
  source = "10.30.4.5"
  host   = "registry-1.docker.io"
  expect = "allow"
  rule   = "container-registries"
}
test "servers: PyPI on an odd port denied" {
  source = "10.30.4.5"
  host   = "pypi.org"
  port   = 8443
  expect = "deny"
}
test "servers: anything else denied by default" {
  source = "10.30.4.5"
  host   = "www.gouv.fr"
  expect = "deny"
}
test "servers: TikTok denied" {
  source = "10.30.4.5"
  host   = "www.tiktok.com"
  expect = "deny"
}

# unknown sources
test "a source in no segment is denied" {
  source = "192.0.2.10"
  host   = "www.gouv.fr"
  expect = "deny"
}
test "an IPv6 source in no segment is denied" {
  source = "2001:db8::10"
  host   = "www.gouv.fr"
  expect = "deny"
}
