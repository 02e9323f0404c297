package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
)

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Denied is the segment's deny rules (monitor rules excluded), in order.
func (s Segment) Denied() []Rule {
	var out []Rule
	for _, r := range s.Rules {
		if r.Action == "deny" && !r.Monitor {
			out = append(out, r)
		}
	}
	return out
}

// Passed is the number of passing tests.
func (r *Report) Passed() int { return len(r.Tests) - r.TestsFail }

// Describe is the rule's matchers with each category's size:
// "categories social (120), video (40); ports 443".
func (r *Report) Describe(ru Rule) string {
	return ru.describe(func(n string) string {
		for _, c := range r.Categories {
			if c.Name == n {
				return fmt.Sprintf("%s (%d)", n, c.Entries)
			}
		}
		return n
	})
}

func days(d *int) string {
	if d == nil {
		return "never expires"
	}
	switch {
	case *d < 0:
		return fmt.Sprintf("expired %d days ago", -*d)
	case *d == 0:
		return "expires today"
	}
	return fmt.Sprintf("%d days left", *d)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// chart is an inline SVG bar chart of a daily series: one bar per day,
// scaled to the series' maximum, which the caption states.
func chart(daily []int, labels []string) template.HTML {
	if len(daily) == 0 {
		return ""
	}
	peak := 0
	for _, n := range daily {
		peak = max(peak, n)
	}
	const h = 24
	bw := 4
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="daily hits, peak %d"><rect width="%d" height="%d" class="bg"/>`,
		len(daily)*bw, h, len(daily)*bw, h, peak, len(daily)*bw, h)
	for i, n := range daily {
		if n == 0 {
			continue
		}
		bh := max(1, n*h/max(peak, 1))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d"><title>%s: %d</title></rect>`, i*bw, h-bh, bw-1, bh, labels[i], n)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and YYYY-MM-DD dates only
}

var funcs = template.FuncMap{
	"days":  days,
	"stamp": stamp,
	"chart": chart,
	"join":  strings.Join,
	"num":   func(i int) string { return strconv.Itoa(i + 1) },
	"dec":   func(i int) int { return i - 1 },
}

var htmlTmpl = template.Must(template.New("report").Funcs(funcs).Parse(htmlSource))

// WriteHTML writes one self-contained page: inline CSS and SVG, no scripts,
// no external assets, a print stylesheet.
func (r *Report) WriteHTML(w io.Writer) error { return htmlTmpl.Execute(w, r) }

const htmlSource = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>egress policy attestation {{.ConfigVersion}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#111}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #999;margin-top:1.6em}h3{font-size:1em}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border:1px solid #bbb;padding:.2em .4em;text-align:left;vertical-align:top;overflow-wrap:break-word}td code,td.w{overflow-wrap:anywhere}
th{background:#eee}.d{white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.9em}
.deny{color:#a00;font-weight:600}.allow{color:#060;font-weight:600}.fail,.expired{color:#a00;font-weight:600}.pass{color:#060}
.muted{color:#555}dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em}dt{font-weight:600}dd{margin:0}
svg.chart rect{fill:#345}svg.chart rect.bg{fill:#f3f3f3}
@media print{body{margin:0;max-width:none;font-size:10pt}h2{break-after:avoid}tr,svg{break-inside:avoid}th{background:none}a{color:inherit;text-decoration:none}
svg.chart rect{fill:#000}svg.chart rect.bg{fill:none;stroke:#999;stroke-width:.5}}
</style></head><body>
<h1>egress policy attestation</h1>
<dl id="summary">
<dt>Configuration</dt><dd><code>{{.Config}}</code></dd>
<dt>config_version</dt><dd><code id="config-version">{{.ConfigVersion}}</code></dd>
<dt>Commit</dt><dd><code id="commit">{{if .Commit}}{{.Commit}}{{if .Dirty}} (config files modified since){{end}}{{else}}not in a git tree{{end}}</code></dd>
{{if .Commit}}<dt>Since</dt><dd>the date a rule's first line was last committed (git blame)</dd>{{end}}
<dt>Generated</dt><dd>{{stamp .Generated}}</dd>
<dt>Tests</dt><dd>{{.Passed}} passed, {{if .TestsFail}}<span class="fail">{{.TestsFail}} failed</span>{{else}}0 failed{{end}}</dd>
{{with .Events}}<dt>Events</dt><dd>{{.Events}} events from {{stamp .First}} to {{stamp .Last}} ({{join .Inputs ", "}}){{if .Malformed}}; {{.Malformed}} malformed lines{{end}}{{if .OutOfWindow}}; {{.OutOfWindow}} outside the window{{end}}</dd>{{end}}
</dl>

<h2 id="segments">What is denied, per segment</h2>
{{range .Segments}}<h3>Segment “{{.Name}}”</h3>
<p>Sources {{join .Sources ", "}}. Default: <span class="{{.Default}}">{{.Default}}</span>.{{if .RequireAuth}} Clients must identify themselves (<code>require_auth</code>).{{end}}</p>
<table><thead><tr><th>#</th><th>Rule</th><th>Action</th><th>Matches (list entries)</th><th>Since</th><th>Where</th></tr></thead><tbody>
{{range $i, $r := .Rules}}<tr><td class="n">{{num $i}}</td><td>{{$r.Name}} <span class="muted">({{$r.RulesetKind}} {{$r.Ruleset}})</span>{{if $r.Description}}<br><span class="muted">{{$r.Description}}</span>{{end}}</td>
<td><span class="{{$r.Action}}">{{$r.Action}}</span>{{if $r.Monitor}} (monitor only){{end}}{{if $r.Exception}} exception{{end}}{{if $r.Expired}} <span class="expired">expired</span>{{end}}</td>
<td>{{$.Describe $r}}</td><td class="d">{{or $r.Since "—"}}</td><td><code>{{$r.Pos}}</code></td></tr>
{{else}}<tr><td colspan="6">no rules: the default decides everything</td></tr>{{end}}</tbody></table>
{{end}}

<h2 id="lists">Lists</h2>
<table><thead><tr><th>Category</th><th>Entries</th><th>Sources</th></tr></thead><tbody>
{{range .Categories}}<tr><td>{{.Name}}{{if .Description}}<br><span class="muted">{{.Description}}</span>{{end}}</td><td class="n">{{.Entries}}</td><td>{{range .Sources}}<code>{{.}}</code><br>{{end}}</td></tr>
{{else}}<tr><td colspan="3">no categories</td></tr>{{end}}</tbody></table>

<h2 id="exceptions">Exceptions</h2>
<table><thead><tr><th>Rule</th><th>Action</th><th>Matches</th><th>Segments</th><th>Owner, ticket</th><th>In force</th></tr></thead><tbody>
{{range .Exceptions}}<tr><td>{{.Rule}} <span class="muted">({{.RulesetKind}} {{.Ruleset}})</span></td><td><span class="{{.Action}}">{{.Action}}</span></td><td>{{.Matches}}</td><td>{{join .Segments ", "}}</td>
<td class="w">{{or .Owner "no owner"}}<br>{{or .Ticket "no ticket"}}</td><td>{{with .Since}}since <span class="d">{{.}}</span><br>{{end}}{{if .Expires}}expires <span class="d">{{.Expires}}</span><br><span{{if .Expired}} class="expired"{{end}}>{{days .DaysLeft}}</span>{{else}}never expires{{end}}</td></tr>
{{else}}<tr><td colspan="6">no exceptions</td></tr>{{end}}</tbody></table>

<h2 id="tests">Test blocks</h2>
<table><thead><tr><th>Test</th><th>Result</th><th>Decision</th><th>Where</th></tr></thead><tbody>
{{range .Tests}}<tr><td>{{.Name}}</td><td>{{if .Pass}}<span class="pass">PASS</span>{{else}}<span class="fail">FAIL</span> {{.Why}}{{end}}</td><td>{{.Decision}}</td><td><code>{{.Pos}}</code></td></tr>
{{else}}<tr><td colspan="4">no test blocks</td></tr>{{end}}</tbody></table>
{{with .Events}}{{$days := .Days}}
<h2 id="hits">Hits per rule</h2>
<p class="muted">{{if $days}}Daily bars from {{index $days 0}} to {{index $days (len $days | dec)}}; each chart is scaled to its own peak.{{end}}{{if .SourcesCapped}} Unique sources are lower bounds (the address budget was reached).{{end}}</p>
<table><thead><tr><th>Rule / reason</th><th>Action</th><th>Hits</th><th>Unique sources</th><th>Daily</th></tr></thead><tbody>
{{range .Rules}}<tr><td>{{.Label}}</td><td><span class="{{.Action}}">{{.Action}}</span></td><td class="n">{{.Hits}}</td><td class="n">{{.Sources}}</td><td>{{chart .Daily $days}}</td></tr>
{{else}}<tr><td colspan="5">no events</td></tr>{{end}}</tbody></table>
<h2 id="exception-hits">Hits per exception</h2>
<table><thead><tr><th>Exception</th><th>Action</th><th>Hits</th><th>Unique sources</th><th>Daily</th></tr></thead><tbody>
{{range .Exceptions}}<tr><td>{{.Label}}</td><td><span class="{{.Action}}">{{.Action}}</span></td><td class="n">{{.Hits}}</td><td class="n">{{.Sources}}</td><td>{{chart .Daily $days}}</td></tr>
{{else}}<tr><td colspan="5">no exceptions</td></tr>{{end}}</tbody></table>
<h2 id="monitor">Monitor rules</h2>
<table><thead><tr><th>Monitor rule</th><th>Would</th><th>Matched</th><th>Would have blocked</th><th>Unique sources</th><th>Daily</th></tr></thead><tbody>
{{range .Monitor}}<tr><td>{{.Label}}</td><td><span class="{{.Action}}">{{.Action}}</span></td><td class="n">{{.Hits}}</td><td class="n">{{.WouldBlock}}</td><td class="n">{{.Sources}}</td><td>{{chart .Daily $days}}</td></tr>
{{else}}<tr><td colspan="6">no monitor rule matched</td></tr>{{end}}</tbody></table>
{{end}}
</body></html>
`
