package main

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

const sampleMain = `# comment line
include:sub
include:ads-only @ads
include:no-cn @-cn

Example.com
domain:sub.example.org @ads   # trailing comment
full:exact.example.net
regexp:^cdn\d\.example\.com$
regex:^old\.example\.com$
keyword:example
cn-only.example @cn
＃full-width comment marker
`

var sampleFiles = map[string]string{
	"main": sampleMain,
	"sub":  "sub-one.example\nfull:sub-two.example\n",
	"ads-only": "tracker.example @ads\n" +
		"plain.example\n",
	"no-cn":  "global.example\nchina.example @cn\n",
	"loop-a": "include:loop-b\n",
	"loop-b": "include:loop-a\n",
}

func sampleFetch(name string) ([]byte, error) {
	s, ok := sampleFiles[name]
	if !ok {
		return nil, fmt.Errorf("no file %q", name)
	}
	return []byte(s), nil
}

func TestParseV2fly(t *testing.T) {
	lines, bad, err := ParseV2fly("main", strings.NewReader(sampleMain))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Kind          Kind
		Value         string
		Attrs         []string
		Must, MustNot []string
	}
	var got []row
	for _, l := range lines {
		got = append(got, row{l.Kind, l.Value, l.Attrs, l.Must, l.MustNot})
	}
	want := []row{
		{KindInclude, "sub", nil, nil, nil},
		{KindInclude, "ads-only", nil, []string{"ads"}, nil},
		{KindInclude, "no-cn", nil, nil, []string{"cn"}},
		{KindDomain, "example.com", nil, nil, nil},
		{KindDomain, "sub.example.org", []string{"ads"}, nil, nil},
		{KindFull, "exact.example.net", nil, nil, nil},
		{KindRegexp, `^cdn\d\.example\.com$`, nil, nil, nil},
		{KindRegexp, `^old\.example\.com$`, nil, nil, nil},
		{KindKeyword, "example", nil, nil, nil},
		{KindDomain, "cn-only.example", []string{"cn"}, nil, nil},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lines:\n got %+v\nwant %+v", got, want)
	}
	if len(bad) != 1 || !errors.Is(bad[0], ErrBadAttr) || !strings.Contains(bad[0].Error(), "main:13") {
		t.Errorf("bad = %v, want one ErrBadAttr at main:13", bad)
	}
}

func TestParseV2flyErrors(t *testing.T) {
	for _, tc := range []struct {
		line string
		want error
	}{
		{"full:", ErrEmptyValue},
		{"foo:bar.example", ErrUnknownType},
		{"example.com ads", ErrBadAttr},
		{"example.com @", ErrBadAttr},
		{"include:x @-", ErrBadAttr},
	} {
		t.Run(tc.line, func(t *testing.T) {
			lines, bad, err := ParseV2fly("f", strings.NewReader(tc.line+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if len(lines) != 0 || len(bad) != 1 || !errors.Is(bad[0], tc.want) {
				t.Errorf("lines %v, bad %v; want one %v", lines, bad, tc.want)
			}
		})
	}
}

func TestParseV2flyTooLarge(t *testing.T) {
	big := strings.Repeat("a.example\n", maxFileBytes/10+1)
	if _, _, err := ParseV2fly("big", strings.NewReader(big)); !errors.Is(err, ErrTooLong) {
		t.Errorf("err = %v, want ErrTooLong", err)
	}
}

func TestResolve(t *testing.T) {
	r := &Resolver{Fetch: sampleFetch, SkipAttrs: []string{"cn"}}
	entries, err := r.Resolve("main")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name)
	}
	sort.Strings(got)
	want := []string{
		"exact.example.net", "example.com", "global.example", "sub-one.example",
		"sub-two.example", "sub.example.org", "tracker.example",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("names:\n got %v\nwant %v", got, want)
	}
	if r.Stats.Regexps != 2 || r.Stats.Keywords != 1 || r.Stats.AttrSkipped != 1 || r.Stats.Malformed != 1 {
		t.Errorf("stats = %+v", r.Stats)
	}
}

func TestResolveCycle(t *testing.T) {
	r := &Resolver{Fetch: sampleFetch}
	if _, err := r.Resolve("loop-a"); !errors.Is(err, ErrIncludeCycle) {
		t.Errorf("err = %v, want ErrIncludeCycle", err)
	}
}

func TestCompact(t *testing.T) {
	got := Compact([]string{"b.example", "www.a.example", "a.example", "b.example", "x.y.b.example", "ab.example"})
	want := []string{"a.example", "ab.example", "b.example"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Compact = %v, want %v", got, want)
	}
}

func TestSharedInfraGuard(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop bool
	}{
		{"amazonaws.com", true},
		{"net", true},
		{"googleapis.com", true},
		{"p16-tiktokcdn-com.akamaized.net", false},
		{"tiktok.com", false},
	} {
		if _, got := sharedInfra(tc.name); got != tc.drop {
			t.Errorf("sharedInfra(%q) = %v, want %v", tc.name, got, tc.drop)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"tiktok.com", true},
		{"_dmarc.example.com", true},
		{"xn--mts47c3w9b1qr.net", true},
		{"", false},
		{"-a.example", false},
		{"a-.example", false},
		{"a..example", false},
		{"A.example", false},
		{"a example", false},
		{strings.Repeat("a", 64) + ".example", false},
		{strings.Repeat("a.", 127) + "ab", false},
	} {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}
