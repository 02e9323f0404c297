#!/usr/bin/env bash
# The floor of a Go proxy on this machine: CPU per new transparent TLS
# connection (and the rate, c=64) of egress, HAProxy and the two designs of
# bench/floor (a Go forwarder that parses, decides and logs nothing: one
# with a goroutine per connection, one with an epoll loop per P), in
# interleaved rounds of the same load (cmd/egress-bench -mode transparent).
# Everything on 127.0.0.1. Prints each run and the medians.
#
#   bash bench/floor.sh
#   ROUNDS=5 DUR=8s bash bench/floor.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-6s}
NAME=bench.test
OUT=${OUT:-$(mktemp -d /tmp/egress-floor.XXXXXX)}
mkdir -p "$OUT"
ORIGIN_TLS=127.0.0.1:26443
ORIGIN_HTTP=127.0.0.1:26080
EGRESS_HTTPS=127.0.0.1:26444
HAPROXY_HTTPS=127.0.0.1:26445
FLOOR=127.0.0.1:26446

LOG_PREFIX=floor
. bench/lib.sh

if ! command -v haproxy >/dev/null; then
	log "installing haproxy"
	[ "$(id -u)" = 0 ] || { log "haproxy missing and not root: install it first"; exit 1; }
	apt-get update -qq >"$OUT/apt.log" 2>&1
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >>"$OUT/apt.log" 2>&1
fi

log "building ($OUT)"
go build -o "$OUT/egress" ./cmd/egress
go build -o "$OUT/egress-bench" ./cmd/egress-bench
go build -o "$OUT/floor" ./bench/floor
egress_config "$OUT/egress.hcl" 127.0.0.1:26128 "$EGRESS_HTTPS" 127.0.0.1:26081 127.0.0.1:26090 "$OUT/events.log"
cat >"$OUT/haproxy.cfg" <<EOC
global
  maxconn $(( ($(ulimit -n) - 200) / 2 ))
defaults
  mode tcp
  timeout connect 5s
  timeout client 5m
  timeout server 5m
frontend tls
  bind $HAPROXY_HTTPS
  tcp-request inspect-delay 5s
  tcp-request content reject if { req.ssl_sni -i -m dom tiktok.com }
  tcp-request content accept if { req_ssl_hello_type 1 }
  use_backend origin if { req.ssl_sni -i $NAME }
backend origin
  server o $ORIGIN_TLS
EOC

# run LABEL ADDR CMD...: start CMD, load it, stop it; one line per run.
run() {
	local label=$1 addr=$2; shift 2
	"$@" >>"$OUT/$label.log" 2>&1 &
	local pid=$!; PIDS+=("$pid")
	wait_port "$addr"
	local line
	line=$("$OUT/egress-bench" -name "$NAME" -origin-tls "$ORIGIN_TLS" -origin-http "$ORIGIN_HTTP" \
		-mode transparent -proxy "$addr" -pid "$pid" -c 64 -d "$DUR" 2>&1 | tail -1)
	stop "$pid"
	local rate cpu
	rate=$(sed -nE 's/.* ([0-9]+)\/s,.*/\1/p' <<<"$line")
	cpu=$(sed -nE 's/.*proxy CPU ([0-9]+) µs\/iter.*/\1/p' <<<"$line")
	printf '%-18s round %s: %6s conns/s  %5s µs CPU per conn\n' "$label" "$r" "${rate:--}" "${cpu:--}"
	echo "$label $rate $cpu" >>"$OUT/results"
	sleep 1
}

: >"$OUT/results"
for r in $(seq 1 "$ROUNDS"); do
	run floor-goroutines "$FLOOR" "$OUT/floor" -mode goroutines -listen "$FLOOR" -origin "$ORIGIN_TLS"
	run floor-loop "$FLOOR" "$OUT/floor" -mode loop -listen "$FLOOR" -origin "$ORIGIN_TLS"
	run egress "$EGRESS_HTTPS" "$OUT/egress" run -config "$OUT/egress.hcl"
	run haproxy "$HAPROXY_HTTPS" haproxy -db -f "$OUT/haproxy.cfg"
done

echo
echo "medians of $ROUNDS rounds (transparent TLS, c=64, $DUR each; CPU relative to HAProxy's):"
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
hcpu=$(awk '$1=="haproxy"{print $3}' "$OUT/results" | median)
for label in floor-goroutines floor-loop egress haproxy; do
	rate=$(awk -v l=$label '$1==l{print $2}' "$OUT/results" | median)
	cpu=$(awk -v l=$label '$1==l{print $3}' "$OUT/results" | median)
	printf '%-18s %6s conns/s  %5s µs CPU per conn  (%s× HAProxy)\n' "$label" "$rate" "$cpu" \
		"$(awk -v a="$cpu" -v b="$hcpu" 'BEGIN{if (b>0) printf "%.2f", a/b; else print "-"}')"
done
