// Package rules owns the configuration model and the policy decision.
//
// Loading goes in four steps, and the file format never reaches the hot path:
//
//  1. load.go parses one .hcl file or a directory of them (merged) with HCL v2
//     into the raw structs of hcl.go, keeping source ranges;
//  2. settings.go and compile.go validate everything into diagnostics with
//     file:line:col (all of them, not just the first);
//  3. compile.go builds an immutable *Config whose *Policy answers Decide;
//  4. the caller publishes that value with an atomic pointer (live reload).
//
// Decide (policy.go) is the one place where allow or deny is decided from a
// client address and a destination name, IP and port. It is safe for
// concurrent use, does not allocate, and its cost does not grow with the
// number of domains (domains.go).
package rules
