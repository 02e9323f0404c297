#!/usr/bin/env bash
# Compare egress with a direct baseline, Squid (peek-and-splice), HAProxy
# (TCP mode, routing by SNI) and, when its binary is given, Smokescreen
# (Stripe's CONNECT proxy) on this machine, all on 127.0.0.1, with the same
# loads from cmd/egress-bench, in interleaved rounds whose order rotates.
# Prints one table of medians with ratios against direct, then issue 15's
# targets, each MET or MISSED from this run's figures. Installs haproxy and
# squid-openssl from Debian packages (needs root). Bounded: about 10 minutes
# with the defaults and Smokescreen (9 min 44 s and 10 min 41 s measured on
# 2 cores; each round about 3 minutes), about 8 without Smokescreen.
#
#   bash bench/compare.sh                                  # defaults
#   SMOKESCREEN_BIN=/path/to/smokescreen bash bench/compare.sh
#   ROUNDS=1 DUR=3s bash bench/compare.sh                  # quicker, noisier
#
# Smokescreen is not installed or built here: build it from its public
# source outside this repository (docs/performance.md). It runs in a mount
# namespace of its own (unshare -m) whose /etc/hosts maps bench.test to
# 127.0.0.1, and may dial 127.0.0.1 only.
#
# Results (JSON lines) and the logs stay in $OUT (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}        # rounds; each restarts every proxy and runs every figure once
DUR=${DUR:-8s}             # one rate or latency measurement
TPUT_BYTES=${TPUT_BYTES:-1073741824}
IDLE_TUNNELS=${IDLE_TUNNELS:-2000}
SMOKESCREEN_BIN=${SMOKESCREEN_BIN:-}
DECIDE=${DECIDE:-1}        # 0: skip the Decide/compile 1M benchmark (about 40 s)
DECIDE_COUNT=${DECIDE_COUNT:-$ROUNDS}
NAME=bench.test
OUT=${OUT:-$(mktemp -d /tmp/egress-compare.XXXXXX)}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
STARTED=$(date +%s)

# Loopback ports.
ORIGIN_TLS=127.0.0.1:24443
ORIGIN_HTTP=127.0.0.1:24080
EGRESS_PROXY=127.0.0.1:23128
EGRESS_HTTPS=127.0.0.1:28443
EGRESS_HTTP=127.0.0.1:28080
EGRESS_ADMIN=127.0.0.1:29090
SQUID_PROXY=127.0.0.1:23129
HAPROXY_HTTPS=127.0.0.1:28444
SMOKESCREEN_PROXY=127.0.0.1:23130

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

# --- Decide at 1M domains: a CPU benchmark of the policy, before any proxy runs
if [ "$DECIDE" = 1 ]; then
	log "Decide and compile at 1M domains (go test -bench, $DECIDE_COUNT passes)"
	if go test ./internal/rules -run '^$' -bench 'Decide1M|Compile1M' -benchmem -count "$DECIDE_COUNT" \
		>"$OUT/decide1m.txt" 2>&1; then
		"$BENCH" -gobench "$OUT/decide1m.txt" >>"$RESULTS" || log "no Decide1M results in $OUT/decide1m.txt"
	else
		log "go test -bench Decide1M failed: see $OUT/decide1m.txt"
	fi
else
	log "Decide1M: skipped (DECIDE=0)"
fi

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
# Squid drops to the user proxy, which must reach its directory: $OUT (from
# mktemp, 0700) must be traversable.
chmod o+x "$OUT"
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

# --- smokescreen: open default policy, tiktok.com denied, 127.0.0.1 only ----
PROXIES=(egress squid haproxy)
if [ -z "$SMOKESCREEN_BIN" ]; then
	log "smokescreen: skipped (set SMOKESCREEN_BIN=/path/to/smokescreen to include it)"
elif [ ! -x "$SMOKESCREEN_BIN" ]; then
	log "smokescreen: skipped ($SMOKESCREEN_BIN is not an executable file)"
elif ! unshare -m true 2>/dev/null; then
	log "smokescreen: skipped (unshare -m is not permitted here; it is how bench.test maps to 127.0.0.1 for Smokescreen)"
else
	PROXIES+=(smokescreen)
	mkdir -p "$OUT/smokescreen"
	echo "127.0.0.1 $NAME" >"$OUT/smokescreen/hosts"
	cat >"$OUT/smokescreen/acl.yaml" <<EOF
---
version: v1
services: []
default:
  project: bench
  action: open
global_deny_list:
  - tiktok.com
  - "*.tiktok.com"
EOF
	# allow_ranges is checked before deny_ranges: 127.0.0.1 is the only
	# destination it may dial. A name not in its hosts file would be asked
	# of 127.0.0.1:53 (nothing answers there), never of another resolver.
	cat >"$OUT/smokescreen/config.yaml" <<EOF
ip: ${SMOKESCREEN_PROXY%:*}
port: ${SMOKESCREEN_PROXY##*:}
allow_missing_role: true
acl_file: $OUT/smokescreen/acl.yaml
allow_ranges: ["127.0.0.1/32"]
deny_ranges: ["0.0.0.0/0", "::/0"]
network: ip4
resolver_addresses: ["127.0.0.1:53"]
idle_timeout: 5m
exit_timeout: 1s
EOF
fi

declare -A PID
start_egress() {
	"$OUT/egress" run -config "$OUT/egress.hcl" >>"$OUT/egress.out" 2>&1 &
	PID[egress]=$!; PIDS+=("$!")
	wait_port "$EGRESS_PROXY"; wait_port "$EGRESS_HTTPS"
}
start_squid() {
	squid -N -f "$OUT/squid/squid.conf" >>"$OUT/squid/stdout.log" 2>&1 &
	PID[squid]=$!; PIDS+=("$!")
	wait_port "$SQUID_PROXY"
}
start_haproxy() {
	haproxy -db -f "$OUT/haproxy.cfg" >>"$OUT/haproxy.log" 2>&1 &
	PID[haproxy]=$!; PIDS+=("$!")
	wait_port "$HAPROXY_HTTPS"
}
start_smokescreen() {
	# unshare and sh each exec the next: $! is Smokescreen's own pid.
	unshare -m sh -c 'mount --bind "$1" /etc/hosts && exec "$2" --config-file "$3"' sh \
		"$OUT/smokescreen/hosts" "$SMOKESCREEN_BIN" "$OUT/smokescreen/config.yaml" \
		>>"$OUT/smokescreen/out.log" 2>&1 &
	PID[smokescreen]=$!; PIDS+=("$!")
	wait_port "$SMOKESCREEN_PROXY"
}
restart_all() { # every proxy stopped, then freshly started
	local p
	for p in "${PROXIES[@]}"; do [ -z "${PID[$p]:-}" ] || stop "${PID[$p]}"; done
	for p in "${PROXIES[@]}"; do "start_$p"; done
}
has() { [[ " ${PROXIES[*]} " == *" $1 "* ]]; }

ROUND=0
# bench LABEL FIGURE ARGS...: one run, its JSON line appended to $RESULTS.
bench() {
	local label=$1 figure=$2; shift 2
	"$BENCH" -json -label "$label" -figure "$figure" -round "$ROUND" -name "$NAME" \
		-origin-tls "$ORIGIN_TLS" -origin-http "$ORIGIN_HTTP" "$@" >>"$RESULTS" ||
		log "run $label $figure failed"
	sleep 1 # let closed connections drain
}

# rotate K ITEM...: the items starting at the K-th (mod their number), so
# that no proxy always runs first, or always right after the same one.
rotate() {
	local k=$1; shift
	local n=$# i j
	for ((i = 0; i < n; i++)); do
		j=$(((k + i) % n + 1))
		echo "${!j}"
	done
}

# One function per run: FIGURE_LABEL; block runs those whose proxy takes
# part. Every proxied run passes -pid: the proxy's CPU is then told apart
# from other work on the machine (and measured per tunnel at c=64).
idle_egress() { bench egress idle -mode idle -via connect -proxy "$EGRESS_PROXY" -pid "${PID[egress]}" -tunnels "$IDLE_TUNNELS" -c 32 -d 60s; }
idle_squid() { bench squid idle -mode idle -via connect -proxy "$SQUID_PROXY" -pid "${PID[squid]}" -tunnels "$IDLE_TUNNELS" -c 32 -d 60s; }
idle_haproxy() { bench haproxy idle -mode idle -via transparent -proxy "$HAPROXY_HTTPS" -pid "${PID[haproxy]}" -tunnels "$IDLE_TUNNELS" -c 32 -d 60s; }
idle_smokescreen() { bench smokescreen idle -mode idle -via connect -proxy "$SMOKESCREEN_PROXY" -pid "${PID[smokescreen]}" -tunnels "$IDLE_TUNNELS" -c 32 -d 60s; }

rate_direct() { bench direct rate64 -mode direct -c 64 -d "$DUR"; }
rate_egress() { bench egress rate64 -mode connect -proxy "$EGRESS_PROXY" -pid "${PID[egress]}" -c 64 -d "$DUR"; }
rate_squid() { bench squid rate64 -mode connect -proxy "$SQUID_PROXY" -pid "${PID[squid]}" -c 64 -d "$DUR"; }
rate_smokescreen() { bench smokescreen rate64 -mode connect -proxy "$SMOKESCREEN_PROXY" -pid "${PID[smokescreen]}" -c 64 -d "$DUR"; }
trate_haproxy() { bench haproxy trate64 -mode transparent -proxy "$HAPROXY_HTTPS" -pid "${PID[haproxy]}" -c 64 -d "$DUR"; }
trate_egress() { bench egress trate64 -mode transparent -proxy "$EGRESS_HTTPS" -pid "${PID[egress]}" -c 64 -d "$DUR"; }

p99_direct() { bench direct p99c8 -mode direct -c 8 -d "$DUR"; }
p99_egress() { bench egress p99c8 -mode connect -proxy "$EGRESS_PROXY" -pid "${PID[egress]}" -c 8 -d "$DUR"; }
p99_squid() { bench squid p99c8 -mode connect -proxy "$SQUID_PROXY" -pid "${PID[squid]}" -c 8 -d "$DUR"; }
p99_smokescreen() { bench smokescreen p99c8 -mode connect -proxy "$SMOKESCREEN_PROXY" -pid "${PID[smokescreen]}" -c 8 -d "$DUR"; }
tp99_haproxy() { bench haproxy tp99c8 -mode transparent -proxy "$HAPROXY_HTTPS" -pid "${PID[haproxy]}" -c 8 -d "$DUR"; }
tp99_egress() { bench egress tp99c8 -mode transparent -proxy "$EGRESS_HTTPS" -pid "${PID[egress]}" -c 8 -d "$DUR"; }

tput_direct() { bench direct tput -mode throughput -via direct -bytes "$TPUT_BYTES" -d 60s; }
tput_egress() { bench egress tput -mode throughput -via connect -proxy "$EGRESS_PROXY" -pid "${PID[egress]}" -bytes "$TPUT_BYTES" -d 60s; }
tput_squid() { bench squid tput -mode throughput -via connect -proxy "$SQUID_PROXY" -pid "${PID[squid]}" -bytes "$TPUT_BYTES" -d 60s; }
tput_haproxy() { bench haproxy tput -mode throughput -via transparent -proxy "$HAPROXY_HTTPS" -pid "${PID[haproxy]}" -bytes "$TPUT_BYTES" -d 60s; }
tput_smokescreen() { bench smokescreen tput -mode throughput -via connect -proxy "$SMOKESCREEN_PROXY" -pid "${PID[smokescreen]}" -bytes "$TPUT_BYTES" -d 60s; }

http_direct() { bench direct http8 -mode http -via direct -c 8 -d "$DUR"; }
http_egress() { bench egress http8 -mode http -proxy "$EGRESS_PROXY" -pid "${PID[egress]}" -c 8 -d "$DUR"; }
http_squid() { bench squid http8 -mode http -proxy "$SQUID_PROXY" -pid "${PID[squid]}" -c 8 -d "$DUR"; }
http_smokescreen() { bench smokescreen http8 -mode http -proxy "$SMOKESCREEN_PROXY" -pid "${PID[smokescreen]}" -c 8 -d "$DUR"; }

# block K RUN...: the runs whose proxy takes part (and direct), rotated by K.
block() {
	local k=$1 f runs=()
	shift
	for f in "$@"; do
		case $f in *_direct) ;; *) has "${f##*_}" || continue ;; esac
		runs+=("$f")
	done
	for f in $(rotate "$k" "${runs[@]}"); do "$f"; done
}

# --- interleaved rounds ------------------------------------------------------
for ROUND in $(seq 1 "$ROUNDS"); do
	log "round $ROUND of $ROUNDS: ${PROXIES[*]} freshly started; idle memory first"
	restart_all
	block "$ROUND" idle_egress idle_squid idle_haproxy idle_smokescreen
	block "$ROUND" rate_direct rate_egress rate_squid rate_smokescreen trate_haproxy trate_egress
	block "$ROUND" p99_direct p99_egress p99_squid p99_smokescreen tp99_haproxy tp99_egress
	block "$ROUND" tput_direct tput_egress tput_squid tput_haproxy tput_smokescreen
	block "$ROUND" http_direct http_egress http_squid http_smokescreen
done
for p in "${PROXIES[@]}"; do stop "${PID[$p]}"; done

# --- the table ---------------------------------------------------------------
ELAPSED=$(($(date +%s) - STARTED))
first_line() { "$@" 2>&1 | head -1 || true; }
# With EGRESS_BIN from another commit, EGRESS_VERSION=<commit> names it.
VERSIONS="egress ${EGRESS_VERSION:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}, $(first_line squid -v), $(first_line haproxy -v)"
if has smokescreen; then
	# Built from a source tree without git metadata it says "devel":
	# SMOKESCREEN_VERSION=<commit> names what was built.
	VERSIONS+=", Smokescreen ${SMOKESCREEN_VERSION:-$(first_line "$SMOKESCREEN_BIN" --version | sed 's/^smokescreen version //')}"
fi
summary() {
	echo
	echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)"
	echo "Versions: $VERSIONS"
	echo "Medians of $ROUNDS interleaved rounds (order rotated each round, every proxy restarted each round) of $DUR per rate/latency figure."
	echo "egress writes every event (ECS) to a file; Squid, HAProxy and Smokescreen log every request to a file."
	echo "Wall time: $((ELAPSED / 60)) min $((ELAPSED % 60)) s (ROUNDS=$ROUNDS DUR=$DUR)."
	if [ "$ROUNDS" -lt 3 ] || [ "$DUR" != 8s ] || [ "$IDLE_TUNNELS" != 2000 ] || [ "$TPUT_BYTES" != 1073741824 ]; then
		echo "NOT the issue's measurement (it takes ≥ 3 rounds of 8s, 2,000 idle tunnels, 1 GiB): a quick check only."
	fi
	echo
	"$BENCH" -report "$RESULTS"
	echo
}
summary | tee "$OUT/report.md"
echo
echo "Raw results and logs: $OUT (the tables also in report.md)"
