package rules

import (
	"fmt"
	"strings"

	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/hashicorp/hcl/v2"
)

// pattern is one domain pattern: base name and which of name/subdomains match.
type pattern struct {
	base  string
	kinds uint32
}

// parsePattern reads "name" (the name and every subdomain) or "*.name"
// (subdomains only), normalised.
func parsePattern(s string) (pattern, error) {
	kinds := kindExact | kindSub
	if strings.HasPrefix(s, "*.") {
		s = s[2:]
		kinds = kindSub
	}
	if strings.HasPrefix(s, ".") {
		return pattern{}, fmt.Errorf("a leading dot is not a pattern here: write %q for the name and its subdomains, or %q for subdomains only", s[1:], "*"+s)
	}
	if strings.ContainsAny(s, "*") {
		return pattern{}, fmt.Errorf("a wildcard is allowed only as the whole first label (\"*.example.com\")")
	}
	name, ip, err := hostname.Normalize(s)
	if err != nil {
		return pattern{}, fmt.Errorf("not a valid domain name (labels of 1-63 letters, digits, '-' or '_', 253 bytes at most)")
	}
	if ip.IsValid() {
		return pattern{}, fmt.Errorf("an IP address is not a domain; match destination addresses with cidrs")
	}
	if strings.Contains(s, ":") {
		return pattern{}, fmt.Errorf("a domain pattern has no port; match ports with ports")
	}
	return pattern{base: name, kinds: kinds}, nil
}

// hostsIgnored are the names of a hosts file's own header lines.
var hostsIgnored = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true, "broadcasthost": true,
	"ip6-localhost": true, "ip6-loopback": true, "ip6-localnet": true, "ip6-mcastprefix": true,
	"ip6-allnodes": true, "ip6-allrouters": true, "ip6-allhosts": true, "0.0.0.0": true,
}

// parseList reads a domain list file. Each line is detected on its own: a plain
// pattern ("tiktok.com", "*.tiktok.com"), a hosts-file line ("0.0.0.0 name
// [name...]"), or an adblock line ("||name^"). '#' and '!' start comments;
// blank lines are ignored. Bad lines are diagnostics with the file's line and
// column; the good ones are still returned.
func parseList(filename string, data string, out []pattern) ([]pattern, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		line := data
		if i := strings.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = ""
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		col := 1
		for len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			line = line[1:]
			col++
		}
		line = strings.TrimRight(line, " \t\r")
		if strings.TrimSpace(line) == "" || line[0] == '!' || line[0] == '[' && strings.HasSuffix(line, "]") {
			continue // blank, adblock comment or adblock header ("[Adblock Plus 2.0]")
		}
		bad := func(summary, detail string) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  summary,
				Detail:   detail,
				Subject: &hcl.Range{Filename: filename,
					Start: hcl.Pos{Line: lineNo, Column: col},
					End:   hcl.Pos{Line: lineNo, Column: col + len(line)}},
			})
		}
		switch {
		case strings.HasPrefix(line, "||"):
			name, ok := strings.CutSuffix(line[2:], "^")
			if !ok || strings.ContainsAny(name, "^$/|") {
				bad("Unsupported adblock line", fmt.Sprintf("%q: only domain rules of the form ||name^ are understood.", line))
				continue
			}
			p, err := parsePattern(name)
			if err != nil {
				bad("Invalid domain in list", fmt.Sprintf("%q: %v.", name, err))
				continue
			}
			out = append(out, p)
		case strings.ContainsAny(line, " \t"):
			fields := strings.Fields(line)
			if len(fields) < 2 || !looksLikeIP(fields[0]) {
				bad("Unrecognised list line", fmt.Sprintf("%q: expected a domain, a hosts-file line (\"0.0.0.0 name\") or an adblock line (\"||name^\").", line))
				continue
			}
			for _, f := range fields[1:] {
				if hostsIgnored[strings.ToLower(f)] {
					continue
				}
				p, err := parsePattern(f)
				if err != nil {
					bad("Invalid domain in list", fmt.Sprintf("%q: %v.", f, err))
					continue
				}
				out = append(out, p)
			}
		case strings.HasPrefix(line, "@@") || strings.Contains(line, "##") || strings.HasPrefix(line, "/"):
			bad("Unsupported adblock line", fmt.Sprintf("%q: exceptions, cosmetic and regular-expression rules are not understood; only ||name^.", line))
		default:
			p, err := parsePattern(line)
			if err != nil {
				bad("Invalid domain in list", fmt.Sprintf("%q: %v.", line, err))
				continue
			}
			out = append(out, p)
		}
	}
	return out, diags
}

func looksLikeIP(s string) bool {
	_, ip, err := hostname.Normalize(s)
	return err == nil && ip.IsValid()
}
