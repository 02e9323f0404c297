#!/usr/bin/env bash
# The shipped configs: the embedded default and every example must validate and
# pass their own test blocks (`egress test`).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)/egress
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/egress
for cfg in config/default.hcl config/examples/*.hcl; do
  echo "ci: examples.sh: $cfg"
  "$bin" validate "$cfg" >/dev/null
  "$bin" test "$cfg" | sed 's/^/  [egress test] /'
done
