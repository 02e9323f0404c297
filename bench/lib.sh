# Shared by bench/compare.sh and bench/compare-builds.sh (sourced, not run).

# Every process a script starts goes in PIDS; all are ended on exit.
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 1
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Raise the descriptor limit (the idle test holds thousands of sockets); as
# high as the hard limit allows.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log() { echo "${LOG_PREFIX:-bench}: $*" >&2; }

# wait_port ADDR: until something accepts on ADDR (10 s at most).
wait_port() {
	local i
	for i in $(seq 1 100); do
		(exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
		sleep 0.1
	done
	log "nothing listens on $1"; return 1
}

# stop PID: SIGTERM, then SIGKILL after 5 s.
stop() {
	kill "$1" 2>/dev/null || true
	local i
	for i in $(seq 1 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	kill -9 "$1" 2>/dev/null || true
}

# egress_config FILE PROXY HTTPS HTTP ADMIN EVENTS [ADMIN_EXTRA]: the benchmark
# config (one segment, the social category denied, NAME mapped to loopback,
# limits out of the way, events to a file).
egress_config() {
	cat >"$1" <<EOC
proxy { listen = "$2" }
transparent {
  https_listen = "$3"
  http_listen  = "$4"
  https_port   = ${ORIGIN_TLS##*:}
  http_port    = ${ORIGIN_HTTP##*:}
}
admin {
  listen = "$5"
  ${7:-}
}
upstream {
  hosts         = { "$NAME" = "127.0.0.1" }
  allow_private = ["127.0.0.1/32"]
}
log { output = "file:$6" }
limits {
  max_connections = 100000
  per_source      = 100000
}
category "social" { domains = ["tiktok.com"] }
segment "bench" {
  sources = ["127.0.0.0/8"]
  default = "allow"
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
  }
}
EOC
}
