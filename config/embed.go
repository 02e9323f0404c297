// Package config holds the shipped configuration: the embedded default that
// `egress run` uses without -config, the example configs, and the curated
// domain lists (lists/*.txt) that categories reference.
package config

import "embed"

// FS holds default.hcl and the lists it references, at their paths in this
// folder.
//
//go:embed default.hcl lists/*.txt
var FS embed.FS

// DefaultPath is the default config's path inside FS.
const DefaultPath = "default.hcl"
