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
#   4. the HCL the chart renders (with its list files, and placeholders for the
#      files projected from Secrets: deploy/helm/validate/testdata and throwaway
#      openssl certificates) passes `egress validate`, `egress check` with the
#      helm-test arguments, and `egress test`; proxyProtocol renders
#      proxy_protocol_from in every TCP listener block and fails without
#      proxyProtocolFrom; QUIC, the TLS listener and auth render their HCL,
#      ports and NetworkPolicy rules, and inconsistent values fail the render
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

# --- placeholders ----------------------------------------------------------
# fill_external DIR EXTRACT_OUTPUT: every file the chart projects from an
# existing Secret or ConfigMap ("validate: external PATH") gets a placeholder,
# so that egress validate reads real formats: a self-signed proxy certificate,
# a client CA with a CRL it signed, and the fixtures of deploy/helm/validate/testdata.
# siem-tls/ is handled below as before.
fill_external() {
  local dir=$1 out=$2 path pki="$WORK/pki"
  mkdir -p "$pki"
  while read -r path; do
    mkdir -p "$dir/$(dirname "$path")"
    case "$path" in
      siem-tls/*) ;;
      proxy-tls/tls.crt|proxy-tls/tls.key)
        [ -f "$pki/proxy.crt" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
          -subj /CN=proxy.ministry.example -addext subjectAltName=DNS:proxy.ministry.example \
          -keyout "$pki/proxy.key" -out "$pki/proxy.crt" 2>/dev/null
        cp "$pki/proxy.${path##*.}" "$dir/$path" ;;
      proxy-tls/client-ca.crt|proxy-tls/client.crl)
        if [ ! -f "$pki/ca.crl" ]; then
          openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=ci-device-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
          : >"$pki/index.txt"; echo 01 >"$pki/crlnumber"
          printf '[ca]\ndefault_ca=ci\n[ci]\ndatabase=%s\ncrlnumber=%s\ndefault_md=sha256\ndefault_crl_days=1\n' \
            "$pki/index.txt" "$pki/crlnumber" >"$pki/ca.cnf"
          openssl ca -gencrl -config "$pki/ca.cnf" -keyfile "$pki/ca.key" -cert "$pki/ca.crt" -out "$pki/ca.crl" 2>/dev/null
        fi
        cp "$pki/ca.${path##*.}" "$dir/$path" ;;
      auth/ldap-ca.crt) cp "$pki/proxy.crt" "$dir/$path" 2>/dev/null \
        || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=ci-ldap-ca \
          -keyout "$pki/ldap-ca.key" -out "$dir/$path" 2>/dev/null ;;
      auth/*) cp "deploy/helm/validate/testdata/${path#auth/}" "$dir/$path" \
        || fail "no placeholder in deploy/helm/validate/testdata for $path" ;;
      *) fail "no placeholder for $path (projected from an existing Secret/ConfigMap): add one to fill_external" ;;
    esac
  done < <(sed -n 's/^validate: external //p' "$out")
}

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
  "$VALIDATE" -extract "$WORK/$name-config" "$WORK/$name.yaml" | tee "$WORK/$name-extract.out"
  fill_external "$WORK/$name-config" "$WORK/$name-extract.out"

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

say "QUIC, TLS listener and auth: rendered when on, absent when off"
ALL="$WORK/all-on-config/egress.hcl"
for want in '^  quic_listen    = "0.0.0.0:8443"$' '^  quic_port      = 443$' '^  tls_listen         = "0.0.0.0:3129"$' \
  '^  client_crl_file    = "proxy-tls/client.crl"$' '^  htpasswd_file           = "auth/users.htpasswd"$' \
  '^    keytab            = "auth/proxy.keytab"$' '^    bind_password_file = "auth/ldap-bind-password"$'; do
  grep -q "$want" "$ALL" || { cat "$ALL"; fail "all-on: no line matching $want in the rendered HCL"; }
done
for absent in quic_listen tls_listen '^auth {'; do
  if grep -q "$absent" "$WORK/default-config/egress.hcl"; then fail "default: $absent rendered while off"; fi
done
# The UDP Service/NetworkPolicy ports and the LDAP egress (port 636 from the URL).
grep -A3 -- '- name: tproxy-quic' "$WORK/all-on.yaml" | grep -q 'protocol: UDP' || fail "all-on: no UDP tproxy-quic port"
grep -B1 -- 'protocol: UDP' "$WORK/all-on.yaml" | grep -q -- '- port: 443$' || fail "all-on: no NetworkPolicy egress to UDP 443"
grep -q -- '- port: 636$' "$WORK/all-on.yaml" || fail "all-on: no NetworkPolicy egress to the LDAP port 636"
if grep -q 'tproxy-quic\|proxy-tls' "$WORK/default.yaml"; then fail "default: QUIC or TLS ports rendered while off"; fi

say "inconsistent QUIC/TLS/auth values fail the render with a message"
check_fails() { # message, --set arguments...
  local msg=$1; shift
  if "$HELM" template t "$CHART" --kube-version "$KUBE_VERSION" "$@" >/dev/null 2>"$WORK/fail.err"; then
    fail "the chart rendered $*"
  fi
  grep -qF "$msg" "$WORK/fail.err" || { cat "$WORK/fail.err"; fail "no message '$msg' for $*"; }
}
check_fails 'transparent.quic.enabled needs transparent.enabled' --set transparent.quic.enabled=true
check_fails 'proxyTLS.enabled needs proxyTLS.secretName' --set proxyTLS.enabled=true
check_fails 'are both TCP port 3128' --set proxyTLS.enabled=true,proxyTLS.secretName=s,ports.proxyTls=3128
check_fails 'proxyTLS.clientCA: set secretName or configMapName, not both' \
  --set proxyTLS.enabled=true,proxyTLS.secretName=s,proxyTLS.clientCA.secretName=a,proxyTLS.clientCA.configMapName=b
check_fails 'proxyTLS.clientCA.crlKey needs' --set proxyTLS.enabled=true,proxyTLS.secretName=s,proxyTLS.clientCA.crlKey=crl
check_fails 'auth.enabled needs a source' --set auth.enabled=true
check_fails 'podSecurityContext.fsGroup is unset' --set proxyTLS.enabled=true,proxyTLS.secretName=s,podSecurityContext.fsGroup=null
check_fails 'auth.groupFile gives groups' --set auth.enabled=true,auth.groupFile.secretName=g,auth.kerberos.enabled=true,auth.kerberos.keytab.secretName=k
check_fails 'auth.ldap.url ""' --set auth.enabled=true,auth.ldap.enabled=true
check_fails 'auth.ldap.bindDN needs auth.ldap.bindPassword.secretName' \
  --set auth.enabled=true,auth.ldap.enabled=true,auth.ldap.url=ldap://dc,auth.ldap.bindDN=cn=x
check_fails 'auth.kerberos.enabled needs auth.kerberos.keytab.secretName' --set auth.enabled=true,auth.kerberos.enabled=true
check_fails 'auth.kerberos.groupsFromLDAP needs auth.ldap.enabled' \
  --set auth.enabled=true,auth.kerberos.enabled=true,auth.kerberos.keytab.secretName=k,auth.kerberos.groupsFromLDAP=true

say "values.schema.json rejects bad values"
for bad in "bogus=1" "config.log.format=json" "service.type=External" "ports.proxy=70000" \
  "networkPolicy.unknownKey=1" "proxyProtocolFrom=10.0.0.1" "ports.transparentQuic=0" "transparent.quic.bogus=1" \
  "transparent.quic.enabled=yes" "proxyTLS.clientCertUser=uid" "proxyTLS.secretName=Bad_Name" \
  "auth.ldap.url=http://dc.example" "auth.kerberos.keytab.secret=k" "auth.cacheTTL=5minutes" \
  "auth.maxFailuresPerMinute=-1" "service.nodePorts.transparentQuic=70000" "networkPolicy.ldap.cidrs[0]=dc.example"; do
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
# A credential projected world-readable, and a UDP port allowed as TCP.
awk '/path: proxy-tls\/tls.key/{print; getline; sub(/0440/, "0644")} {print}' "$WORK/all-on.yaml" >"$WORK/bad-mode.yaml"
cmp -s "$WORK/all-on.yaml" "$WORK/bad-mode.yaml" && fail "could not plant a world-readable key"
"$VALIDATE" "$WORK/bad-mode.yaml" >/dev/null 2>"$WORK/bad-mode.err" && fail "validator accepted a world-readable key"
grep -q 'must not be world-readable' "$WORK/bad-mode.err" || { cat "$WORK/bad-mode.err"; fail "no world-readable message"; }
awk '/- port: tproxy-quic/{print; getline; sub(/UDP/, "TCP")} {print}' "$WORK/all-on.yaml" >"$WORK/bad-proto.yaml"
cmp -s "$WORK/all-on.yaml" "$WORK/bad-proto.yaml" && fail "could not plant a protocol mismatch"
"$VALIDATE" "$WORK/bad-proto.yaml" >/dev/null 2>"$WORK/bad-proto.err" && fail "validator accepted a UDP port allowed as TCP"
grep -q 'is TCP but the container port is UDP' "$WORK/bad-proto.err" || { cat "$WORK/bad-proto.err"; fail "no protocol message"; }

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
