#!/usr/bin/env bash
# The shipped configs must lint clean: `egress lint` exits 0 only when every
# finding is fixed or carries a waiver (# lint:ignore <check> <reason>, see
# docs/policy-guide.md "Reviewing a policy change: egress lint").
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)/egress
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/egress
for cfg in config/default.hcl config/examples/*.hcl; do
  echo "ci: lint.sh: $cfg"
  "$bin" lint "$cfg" | sed 's/^/  [egress lint] /'
  # pipefail: a finding (exit 1) or a config error (exit 2) fails the check.
done
