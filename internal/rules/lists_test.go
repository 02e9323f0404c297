package rules

import (
	"os"
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	data, err := os.ReadFile("testdata/lists/social-media.txt")
	if err != nil {
		t.Fatal(err)
	}
	pats, diags := parseList("social-media.txt", string(data), nil)
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	var got []string
	for _, p := range pats {
		s := p.base
		if p.kinds == kindSub {
			s = "*." + s
		}
		got = append(got, s)
	}
	want := "instagram.com *.cdninstagram.com snapchat.com x.com twitter.com reddit.com www.pinterest.com"
	if strings.Join(got, " ") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestParseListErrorsHaveLines(t *testing.T) {
	_, diags := parseList("l.txt", "ok.example\r\n\n  bad..example\n||x.example^$important\n", nil)
	if len(diags) != 2 {
		t.Fatalf("diags %v", diags)
	}
	if r := diags[0].Subject; r.Filename != "l.txt" || r.Start.Line != 3 || r.Start.Column != 3 {
		t.Errorf("range %+v", r)
	}
	if diags[1].Subject.Start.Line != 4 {
		t.Errorf("range %+v", diags[1].Subject)
	}
}

// FuzzParseList: the list parser never panics, and every pattern it returns is
// a valid normalised name.
func FuzzParseList(f *testing.F) {
	data, _ := os.ReadFile("testdata/lists/social-media.txt")
	f.Add(string(data))
	bad, _ := os.ReadFile("testdata/lists/bad.txt")
	f.Add(string(bad))
	f.Add("||a.example^\n0.0.0.0 b.example c.example\n*.d.example\n")
	f.Fuzz(func(t *testing.T, s string) {
		pats, _ := parseList("f.txt", s, nil)
		for _, p := range pats {
			if p.kinds == 0 || p.kinds&^kindMask != 0 {
				t.Fatalf("kinds %d", p.kinds)
			}
			if p2, err := parsePattern(p.base); err != nil || p2.base != p.base {
				t.Fatalf("pattern %q not normalised: %v", p.base, err)
			}
		}
	})
}
