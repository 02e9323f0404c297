#!/usr/bin/env bash
# Compare egress with a direct baseline, Squid (peek-and-splice) and HAProxy
# (TCP mode, routing by SNI) on this machine, all on 127.0.0.1, with the same
# loads from cmd/egress-bench, in interleaved rounds. Prints one table of
# medians with ratios against direct. Installs haproxy and squid-openssl from
# Debian packages (needs root). Bounded: about 8-10 minutes in all.
#
#   bash bench/compare.sh                 # defaults
#   ROUNDS=1 DUR=5s bash bench/compare.sh # quicker, noisier
#
# Results (JSON lines) and the logs stay in $OUT (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}        # rounds of direct, egress, squid, haproxy
DUR=${DUR:-8s}             # one rate or latency measurement
TPUT_BYTES=${TPUT_BYTES:-1073741824}
IDLE_TUNNELS=${IDLE_TUNNELS:-2000}
NAME=bench.test
OUT=${OUT:-$(mktemp -d /tmp/egress-compare.XXXXXX)}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

# Loopback ports.
ORIGIN_TLS=127.0.0.1:24443
ORIGIN_HTTP=127.0.0.1:24080
EGRESS_PROXY=127.0.0.1:23128
EGRESS_HTTPS=127.0.0.1:28443
EGRESS_HTTP=127.0.0.1:28080
EGRESS_ADMIN=127.0.0.1:29090
SQUID_PROXY=127.0.0.1:23129
HAPROXY_HTTPS=127.0.0.1:28444

LOG_PREFIX=compare
. bench/lib.sh # the working directory is the repository root (cd above)

# --- packages ---------------------------------------------------------------
install_peers() {
	if command -v haproxy >/dev/null && command -v squid >/dev/null &&
		squid -v 2>/dev/null | grep -q -- '--with-openssl'; then
		return
	fi
	log "installing haproxy and squid-openssl"
	apt-get update -qq
	apt-cache policy squid-openssl haproxy | grep -E '^[a-z]|Candidate' >&2
	# Keep the packages' own services from starting during the install.
	local made_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy squid-openssl >"$OUT/apt.log" 2>&1 ||
		{ cat "$OUT/apt.log" >&2; exit 1; }
	[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
}



install_peers
log "building egress and egress-bench"
# The working tree; if it does not build (work in progress), the last commit.
build() { # package output
	go build -o "$2" "$1" 2>"$OUT/build.log" && return 0
	log "working tree does not build $1 ($(head -1 "$OUT/build.log")); building HEAD"
	rm -rf "$OUT/src" && mkdir -p "$OUT/src"
	git archive HEAD | tar -x -C "$OUT/src"
	(cd "$OUT/src" && go build -o "$2" "$1")
}
if [ -n "${EGRESS_BIN:-}" ]; then cp "$EGRESS_BIN" "$OUT/egress"; else build ./cmd/egress "$OUT/egress"; fi
build ./cmd/egress-bench "$OUT/egress-bench"
BENCH=$OUT/egress-bench

# --- egress -----------------------------------------------------------------
egress_config "$OUT/egress.hcl" "$EGRESS_PROXY" "$EGRESS_HTTPS" "$EGRESS_HTTP" "$EGRESS_ADMIN" "$OUT/egress-events.log" "pprof  = true"

# --- squid: peek at step 1, terminate tiktok, splice everything else --------
mkdir -p "$OUT/squid"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=compare squid bump CA" -keyout "$OUT/squid/ca.key" -out "$OUT/squid/ca.pem" 2>/dev/null
echo "127.0.0.1 $NAME" >"$OUT/squid/hosts"
cat >"$OUT/squid/squid.conf" <<EOF
http_port $SQUID_PROXY ssl-bump tls-cert=$OUT/squid/ca.pem tls-key=$OUT/squid/ca.key generate-host-certificates=off
acl step1 at_step SslBump1
acl blocked ssl::server_name .tiktok.com
ssl_bump peek step1
ssl_bump terminate blocked
ssl_bump splice all
acl lo src 127.0.0.0/8
http_access deny CONNECT blocked
http_access allow lo
http_access deny all
hosts_file $OUT/squid/hosts
dns_nameservers 127.0.0.1
cache deny all
cache_mem 8 MB
max_filedescriptors 65536
pid_filename $OUT/squid/squid.pid
cache_log $OUT/squid/cache.log
access_log stdio:$OUT/squid/access.log
coredump_dir $OUT/squid
icp_port 0
htcp_port 0
pinger_enable off
shutdown_lifetime 1 second
client_idle_pconn_timeout 5 minutes
read_timeout 5 minutes
EOF
chown -R proxy: "$OUT/squid" 2>/dev/null || true

# --- haproxy: TCP, route by SNI, deny tiktok ---------------------------------
cat >"$OUT/haproxy.cfg" <<EOF
global
  maxconn $(( ($(ulimit -n) - 200) / 2 ))
defaults
  mode tcp
  log global
  timeout connect 5s
  timeout client 5m
  timeout server 5m
frontend tls
  bind $HAPROXY_HTTPS
  log stdout format raw local0
  option tcplog
  tcp-request inspect-delay 5s
  tcp-request content reject if { req.ssl_sni -i -m dom tiktok.com }
  tcp-request content accept if { req_ssl_hello_type 1 }
  use_backend origin if { req.ssl_sni -i $NAME }
backend origin
  server o $ORIGIN_TLS
EOF
haproxy -c -f "$OUT/haproxy.cfg" >&2

start_egress() {
	"$OUT/egress" run -config "$OUT/egress.hcl" >>"$OUT/egress.out" 2>&1 &
	EGRESS_PID=$!; PIDS+=("$EGRESS_PID")
	wait_port "$EGRESS_PROXY"; wait_port "$EGRESS_HTTPS"
}
start_squid() {
	squid -N -f "$OUT/squid/squid.conf" >>"$OUT/squid/stdout.log" 2>&1 &
	SQUID_PID=$!; PIDS+=("$SQUID_PID")
	wait_port "$SQUID_PROXY"
}
start_haproxy() {
	haproxy -db -f "$OUT/haproxy.cfg" >>"$OUT/haproxy.log" 2>&1 &
	HAPROXY_PID=$!; PIDS+=("$HAPROXY_PID")
	wait_port "$HAPROXY_HTTPS"
}

# bench LABEL FIGURE ARGS...: one run, its JSON line appended to $RESULTS.
bench() {
	local label=$1 figure=$2; shift 2
	"$BENCH" -json -label "$label" -figure "$figure" -name "$NAME" \
		-origin-tls "$ORIGIN_TLS" -origin-http "$ORIGIN_HTTP" "$@" >>"$RESULTS" ||
		log "run $label $figure failed"
	sleep 1 # let closed connections drain
}

# --- idle memory, each proxy fresh ------------------------------------------
log "idle: $IDLE_TUNNELS TLS tunnels per proxy, each freshly started"
start_egress
bench egress idle -mode idle -via connect -proxy "$EGRESS_PROXY" -pid "$EGRESS_PID" -tunnels "$IDLE_TUNNELS" -c 32 -d 60s
stop "$EGRESS_PID"
start_squid
bench squid idle -mode idle -via connect -proxy "$SQUID_PROXY" -pid "$SQUID_PID" -tunnels "$IDLE_TUNNELS" -c 32 -d 60s
stop "$SQUID_PID"
start_haproxy
bench haproxy idle -mode idle -via transparent -proxy "$HAPROXY_HTTPS" -pid "$HAPROXY_PID" -tunnels "$IDLE_TUNNELS" -c 32 -d 60s
stop "$HAPROXY_PID"

# --- interleaved rounds ------------------------------------------------------
start_egress; start_squid; start_haproxy
for round in $(seq 1 "$ROUNDS"); do
	log "round $round of $ROUNDS"
	bench direct rate64 -mode direct -c 64 -d "$DUR"
	bench egress rate64 -mode connect -proxy "$EGRESS_PROXY" -pid "$EGRESS_PID" -c 64 -d "$DUR"
	bench squid rate64 -mode connect -proxy "$SQUID_PROXY" -pid "$SQUID_PID" -c 64 -d "$DUR"
	bench haproxy trate64 -mode transparent -proxy "$HAPROXY_HTTPS" -pid "$HAPROXY_PID" -c 64 -d "$DUR"
	bench egress trate64 -mode transparent -proxy "$EGRESS_HTTPS" -pid "$EGRESS_PID" -c 64 -d "$DUR"

	bench direct p99c8 -mode direct -c 8 -d "$DUR"
	bench egress p99c8 -mode connect -proxy "$EGRESS_PROXY" -c 8 -d "$DUR"
	bench squid p99c8 -mode connect -proxy "$SQUID_PROXY" -c 8 -d "$DUR"
	bench haproxy p99c8 -mode transparent -proxy "$HAPROXY_HTTPS" -c 8 -d "$DUR"

	bench direct tput -mode throughput -via direct -bytes "$TPUT_BYTES" -d 60s
	bench egress tput -mode throughput -via connect -proxy "$EGRESS_PROXY" -bytes "$TPUT_BYTES" -d 60s
	bench squid tput -mode throughput -via connect -proxy "$SQUID_PROXY" -bytes "$TPUT_BYTES" -d 60s
	bench haproxy tput -mode throughput -via transparent -proxy "$HAPROXY_HTTPS" -bytes "$TPUT_BYTES" -d 60s

	bench egress http8 -mode http -proxy "$EGRESS_PROXY" -pid "$EGRESS_PID" -c 8 -d "$DUR"
	bench squid http8 -mode http -proxy "$SQUID_PROXY" -pid "$SQUID_PID" -c 8 -d "$DUR"
done

# --- the table ---------------------------------------------------------------
echo
echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)"
echo "Versions: egress $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(squid -v | head -1), $(haproxy -v | head -1)"
echo "Medians of $ROUNDS rounds of $DUR per rate/latency figure; egress writes every event (ECS) to a file."
echo
"$BENCH" -report "$RESULTS"
echo
echo "Raw results and logs: $OUT"
