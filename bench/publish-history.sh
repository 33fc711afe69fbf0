#!/usr/bin/env bash
# /publish throughput with history on (SQLite, the default) against history
# off (--history-max-per-topic 0), same binary, same machine, one run:
# alternating rounds, the median of each. Traffic stays on 127.0.0.1.
#   bench/publish-history.sh [rounds] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
SECONDS_PER_RUN="${2:-15}"
BIN=target/release/sse-ticket
cargo build --release --quiet
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }

export SSE_TICKET_JWT_SECRET="bench-secret-$(date +%s)-0123456789abcdef"
export PUB_TOKEN="$($BIN mint --sub bench --publish '*')"
export RUST_LOG=warn
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

run() { # name, extra serve flags...
    local name="$1"; shift
    rm -f "$WORK"/*.db*
    $BIN serve --bind 127.0.0.1:18181 --database-url "sqlite://$WORK/bench.db" "$@" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 1 50); do curl -sf http://127.0.0.1:18181/healthz >/dev/null && break; sleep 0.1; done
    local rps
    rps=$(wrk -t2 -c32 -d"${SECONDS_PER_RUN}s" -s bench/publish.lua http://127.0.0.1:18181/publish \
        | tee "$WORK/$name.txt" | awk '/Requests\/sec/ {print $2}')
    if grep -q "Non-2xx" "$WORK/$name.txt"; then
        echo "$name: some answers were not 200:" >&2; cat "$WORK/$name.txt" >&2
    fi
    kill -TERM "$pid"; wait "$pid" || true
    echo "$rps"
}

on=(); off=()
for round in $(seq 1 "$ROUNDS"); do
    on+=("$(run "on-$round")")
    off+=("$(run "off-$round" --history-max-per-topic 0)")
    echo "round $round: history on ${on[-1]} req/s, history off ${off[-1]} req/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_on=$(median "${on[@]}"); m_off=$(median "${off[@]}")
echo "median: history on $m_on req/s, history off $m_off req/s ($(awk -v a="$m_on" -v b="$m_off" 'BEGIN {printf "%.0f%%", 100*a/b}') of off)"
