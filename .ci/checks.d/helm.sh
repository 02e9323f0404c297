#!/usr/bin/env bash
# Deployment checks: the Helm chart, the systemd unit and the Dockerfile's build
# contract. Run by .ci/run from the repository root after go test; needs only Go
# (helm is compiled from the Go module proxy once and cached).
#
#   1. helm lint --strict: default values and ci/all-on-values.yaml
#   2. values.schema.json rejects unknown and mistyped values
#   3. helm template both, then deploy/helm/validate decodes every object into
#      its typed Kubernetes struct (unknown fields fail) and checks selectors,
#      ports, mounts and pod hardening; a planted unknown field must fail
#   4. the HCL the chart renders (with its list files) passes `egress validate`,
#      `egress check` with the helm-test arguments, and `egress test`;
#      proxyProtocol renders proxy_protocol_from in every listener block and
#      fails without proxyProtocolFrom
#   5. systemd-analyze verify + security on deploy/systemd/egress.service
#   6. the Dockerfile's go build line, its -X version flags, and its baked-in
#      default config
set -euo pipefail
cd "$(dirname "$0")/../.."

HELM_VERSION=v3.22.0
KUBE_VERSION=1.34.0
CHART=deploy/helm/egress
CACHE=${EGRESS_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/egress-ci}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say() { echo "ci: helm.sh: $*"; }
fail() { echo "ci: helm.sh: FAIL: $*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------
HELM="$CACHE/helm-$HELM_VERSION"
if [ ! -x "$HELM" ]; then
  say "building helm $HELM_VERSION (once; cached at $HELM)"
  mkdir -p "$CACHE"
  GOFLAGS=-mod=mod GOBIN="$WORK/gobin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$WORK/gobin/helm" "$HELM"
fi
"$HELM" version --short

say "building deploy/helm/validate"
(cd deploy/helm/validate && GOFLAGS=-mod=readonly go vet . && GOFLAGS=-mod=readonly go build -o "$WORK/validate" .)
VALIDATE="$WORK/validate"

EGRESS=""
if [ -f cmd/egress/main.go ]; then
  say "building cmd/egress with the Dockerfile's flags"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=ci-helm-check -X main.commit=c0ffee" \
    -o "$WORK/egress" ./cmd/egress
  EGRESS="$WORK/egress"
else
  echo "SKIP: cmd/egress not built yet: the rendered HCL is NOT checked by egress validate" >&2
fi

# --- chart -----------------------------------------------------------------
declare -A VALUES=([default]="" [all-on]="$CHART/ci/all-on-values.yaml")
for name in default all-on; do
  args=()
  [ -n "${VALUES[$name]}" ] && args=(-f "${VALUES[$name]}")
  say "lint --strict ($name)"
  "$HELM" lint --strict --kube-version "$KUBE_VERSION" "$CHART" "${args[@]}"

  say "template + strict validation ($name)"
  "$HELM" template ci-release "$CHART" --namespace egress --kube-version "$KUBE_VERSION" \
    "${args[@]}" >"$WORK/$name.yaml"
  "$VALIDATE" -extract "$WORK/$name-config" "$WORK/$name.yaml"

  if [ -n "$EGRESS" ]; then
    if grep -q '"siem-tls/' "$WORK/$name-config/egress.hcl"; then
      # The Secret config.log.tls projects: a throwaway CA and client pair.
      mkdir -p "$WORK/$name-config/siem-tls"
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=ci-siem \
        -keyout "$WORK/$name-config/siem-tls/client.key" -out "$WORK/$name-config/siem-tls/client.crt" 2>/dev/null
      cp "$WORK/$name-config/siem-tls/client.crt" "$WORK/$name-config/siem-tls/ca.crt"
    fi
    say "egress validate on the rendered config ($name)"
    "$EGRESS" validate "$WORK/$name-config"
    # The helm test hook's command, with the arguments the chart renders.
    src=$(grep -A1 -- '- -source' "$WORK/$name.yaml" | tail -1 | sed 's/^ *- *//; s/"//g')
    host=$(grep -A1 -- '- -host' "$WORK/$name.yaml" | tail -1 | sed 's/^ *- *//; s/"//g')
    [ -n "$src" ] && [ -n "$host" ] || fail "no -source/-host in the rendered test hook ($name)"
    say "egress check -source $src -host $host ($name)"
    "$EGRESS" check -config "$WORK/$name-config" -source "$src" -host "$host" >"$WORK/check.out" \
      || { cat "$WORK/check.out"; fail "egress check exited non-zero ($name)"; }
    grep -q '^decision: deny' "$WORK/check.out" || { cat "$WORK/check.out"; fail "expected a deny for $host ($name)"; }
    if grep -q '^test "' "$WORK/$name-config/egress.hcl"; then
      say "egress test on the rendered config ($name)"
      # Indented so this small count is not mistaken for the suite's summary.
      "$EGRESS" test "$WORK/$name-config" | sed 's/^/    [egress test] /' \
        || fail "egress test failed ($name)"
    fi
  fi
done

say "proxyProtocol: proxy_protocol_from in every listener block, and required"
n=$(grep -c '^  proxy_protocol_from = \["10.0.0.0/24","10.0.1.0/24","fd00:0:0:1::/64"\]$' "$WORK/all-on-config/egress.hcl" || true)
[ "$n" = 2 ] || { cat "$WORK/all-on-config/egress.hcl"; fail "all-on: proxy_protocol_from rendered $n times, want 2 (proxy, transparent)"; }
if grep -q proxy_protocol_from "$WORK/default-config/egress.hcl"; then fail "default: proxy_protocol_from without proxyProtocol"; fi
if "$HELM" template t "$CHART" --kube-version "$KUBE_VERSION" --set proxyProtocol=true >/dev/null 2>"$WORK/pp.err"; then
  fail "the chart rendered proxyProtocol=true without proxyProtocolFrom"
fi
grep -q 'proxyProtocol: true needs proxyProtocolFrom' "$WORK/pp.err" || { cat "$WORK/pp.err"; fail "no proxyProtocolFrom message"; }

say "values.schema.json rejects bad values"
for bad in "bogus=1" "config.log.format=json" "service.type=External" "ports.proxy=70000" \
  "networkPolicy.unknownKey=1" "proxyProtocolFrom=10.0.0.1"; do
  if "$HELM" template t "$CHART" --kube-version "$KUBE_VERSION" --set "$bad" >/dev/null 2>&1; then
    fail "the chart accepted --set $bad"
  fi
done

say "validator rejects an unknown field and a broken selector"
sed 's/^\( *\)readOnlyRootFilesystem: true/\1readOnlyRootFilesystem: true\n\1readOnlyRootFileSystem: true/' \
  "$WORK/default.yaml" >"$WORK/bad-field.yaml"
cmp -s "$WORK/default.yaml" "$WORK/bad-field.yaml" && fail "could not plant a bad field"
if "$VALIDATE" "$WORK/bad-field.yaml" 2>/dev/null; then fail "validator accepted an unknown field"; fi
sed 's/^\(    \)app.kubernetes.io\/component: proxy$/\1app.kubernetes.io\/component: proxx/' \
  "$WORK/default.yaml" >"$WORK/bad-selector.yaml"
if "$VALIDATE" "$WORK/bad-selector.yaml" 2>/dev/null; then fail "validator accepted a Service selecting nothing"; fi

# --- systemd ---------------------------------------------------------------
UNIT=deploy/systemd/egress.service
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart's binary exists: point it at a real one.
  mkdir -p "$WORK/unit"
  sed "s#/usr/local/bin/egress#${EGRESS:-/bin/true}#g" "$UNIT" >"$WORK/unit/egress.service"
  say "systemd-analyze verify $UNIT"
  systemd-analyze verify "$WORK/unit/egress.service"
  say "systemd-analyze security $UNIT (exposure must stay <= 2.0)"
  systemd-analyze security --offline=yes --threshold=20 "$WORK/unit/egress.service" | tail -1
else
  echo "SKIP: systemd-analyze not installed: $UNIT NOT verified (apt-get install systemd)" >&2
fi

# --- Dockerfile -------------------------------------------------------------
say "Dockerfile: build line and baked-in config"
grep -q 'go build -trimpath' Dockerfile || fail "Dockerfile lost its go build line"
grep -q -- '-X main.version=${VERSION} -X main.commit=${COMMIT}' Dockerfile || fail "Dockerfile lost its -X flags"
if [ -n "$EGRESS" ]; then
  "$EGRESS" version | grep -q 'ci-helm-check' || fail "-X main.version did not reach 'egress version'"
  "$EGRESS" version | grep -q 'c0ffee' || fail "-X main.commit did not reach 'egress version'"
  mkdir -p "$WORK/image-config"
  grep -q '^COPY deploy/image/egress.hcl /out/etc/egress/egress.hcl' Dockerfile \
    || fail "the Dockerfile no longer bakes in deploy/image/egress.hcl"
  sed "s#/usr/share/egress/lists/#$PWD/config/lists/#g" deploy/image/egress.hcl >"$WORK/image-config/egress.hcl"
  "$EGRESS" validate "$WORK/image-config"
fi
echo "NOTE: no container engine in CI: the image itself is not built here (.ci/checks.d/image.sh parses the Dockerfile with buildah)" >&2
say "ok"
