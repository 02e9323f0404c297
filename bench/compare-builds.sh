#!/usr/bin/env bash
# Compare two builds of egress on this machine, same run, same loads
# (cmd/egress-bench), interleaved rounds: new CONNECT tunnels/s and proxy CPU
# per tunnel (c=64), transparent connections/s, plain-HTTP requests/s, p99 at
# c=8, one tunnel's throughput (TPUT_BYTES each way) and idle memory per
# tunnel (each build freshly started). Everything on 127.0.0.1. Prints one
# table of medians, "direct" as the baseline.
#
#   bash bench/compare-builds.sh                      # HEAD~1 (BASE) against the working tree
#   BASE=7e1aeda bash bench/compare-builds.sh         # another baseline commit
#   OLD_BIN=/tmp/a NEW_BIN=/tmp/b bash bench/compare-builds.sh
#   ROUNDS=1 DUR=5s IDLE_TUNNELS=1000 bash bench/compare-builds.sh   # quicker, noisier
#   TPUT_BYTES=0 bash bench/compare-builds.sh         # without the throughput figure
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-8s}
IDLE_TUNNELS=${IDLE_TUNNELS:-2000}
TPUT_BYTES=${TPUT_BYTES:-1073741824}
BASE=${BASE:-HEAD~1}
NAME=bench.test
OUT=${OUT:-$(mktemp -d /tmp/egress-builds.XXXXXX)}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
ORIGIN_TLS=127.0.0.1:25443
ORIGIN_HTTP=127.0.0.1:25080

LOG_PREFIX=compare-builds
. bench/lib.sh # the working directory is the repository root (cd above)

log "building ($OUT)"
if [ -z "${OLD_BIN:-}" ]; then
	rm -rf "$OUT/old-src" && mkdir -p "$OUT/old-src"
	git archive "$BASE" | tar -x -C "$OUT/old-src"
	(cd "$OUT/old-src" && go build -o "$OUT/egress-old" ./cmd/egress)
	OLD_BIN=$OUT/egress-old
fi
if [ -z "${NEW_BIN:-}" ]; then
	go build -o "$OUT/egress-new" ./cmd/egress
	NEW_BIN=$OUT/egress-new
fi
go build -o "$OUT/egress-bench" ./cmd/egress-bench
BENCH=$OUT/egress-bench



# config LABEL BASEPORT: an egress config on 127.0.0.1:BASEPORT+{0,1,2,3}.
config() {
	egress_config "$OUT/$1.hcl" "127.0.0.1:$2" "127.0.0.1:$(($2 + 1))" "127.0.0.1:$(($2 + 2))" "127.0.0.1:$(($2 + 3))" "$OUT/$1-events.log"
}
config egress-old 26100
config egress-new 26200

declare -A PID
start() { # LABEL BIN BASEPORT
	"$2" run -config "$OUT/$1.hcl" >>"$OUT/$1.out" 2>&1 &
	PID[$1]=$!; PIDS+=("$!")
	wait_port "127.0.0.1:$3"; wait_port "127.0.0.1:$(($3 + 1))"
}
ROUND=0
bench() { # LABEL FIGURE ARGS...
	local label=$1 figure=$2; shift 2
	"$BENCH" -json -label "$label" -figure "$figure" -round "$ROUND" -name "$NAME" \
		-origin-tls "$ORIGIN_TLS" -origin-http "$ORIGIN_HTTP" "$@" >>"$RESULTS" ||
		log "run $label $figure failed"
	sleep 1
}

log "idle: $IDLE_TUNNELS tunnels per build, each freshly started"
start egress-old "$OLD_BIN" 26100
bench egress-old idle -mode idle -via connect -proxy 127.0.0.1:26100 -pid "${PID[egress-old]}" -tunnels "$IDLE_TUNNELS" -c 32 -d 60s
stop "${PID[egress-old]}"
start egress-new "$NEW_BIN" 26200
bench egress-new idle -mode idle -via connect -proxy 127.0.0.1:26200 -pid "${PID[egress-new]}" -tunnels "$IDLE_TUNNELS" -c 32 -d 60s
stop "${PID[egress-new]}"

start egress-old "$OLD_BIN" 26100
start egress-new "$NEW_BIN" 26200
for round in $(seq 1 "$ROUNDS"); do
	ROUND=$round
	log "round $round of $ROUNDS"
	bench direct rate64 -mode direct -c 64 -d "$DUR"
	if [ "$TPUT_BYTES" != 0 ]; then bench direct tput -mode throughput -via direct -bytes "$TPUT_BYTES" -d 60s; fi
	# Alternate which build goes first: the one run second meets a machine
	# warmed (and loaded) by the first.
	order="egress-old:26100 egress-new:26200"
	[ $((round % 2)) -eq 0 ] && order="egress-new:26200 egress-old:26100"
	for b in $order; do
		l=${b%:*}; p=${b#*:}
		bench "$l" rate64 -mode connect -proxy "127.0.0.1:$p" -pid "${PID[$l]}" -c 64 -d "$DUR"
		bench "$l" trate64 -mode transparent -proxy "127.0.0.1:$(($p + 1))" -pid "${PID[$l]}" -c 64 -d "$DUR"
		bench "$l" p99c8 -mode connect -proxy "127.0.0.1:$p" -c 8 -d "$DUR"
		bench "$l" http8 -mode http -proxy "127.0.0.1:$p" -pid "${PID[$l]}" -c 8 -d "$DUR"
		if [ "$TPUT_BYTES" != 0 ]; then bench "$l" tput -mode throughput -via connect -proxy "127.0.0.1:$p" -bytes "$TPUT_BYTES" -d 60s; fi
	done
done

echo
echo "Machine: $(nproc) CPUs, Linux $(uname -r); old: $OLD_BIN ($BASE), new: $NEW_BIN"
echo "Medians of $ROUNDS rounds of $DUR per rate/latency figure."
echo
"$BENCH" -report "$RESULTS"
echo
echo "Raw results and logs: $OUT"
