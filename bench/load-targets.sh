#!/usr/bin/env bash
# Measures the load targets of BENCHMARKS.md with the load generator, each
# figure the median of several runs, every server on 127.0.0.1:
#   1. /sse-token against /healthz, same server, same connections (alternating rounds)
#   2. 18,000 streams held by one server: open rate and RSS per stream (a fresh server each run)
#   3. one event to 10,000 streams, sse-ticket against nginx + nchan (alternating rounds)
#   4. 100 events/s to 1,000 streams
#   5. soak: 60 s of issuing with no redemption, RSS sampled every second
#   6. /sse-token and one event to 10,000 streams with the Redis backends
#      against the in-memory ones (alternating rounds; Redis at $REDIS_URL)
# Usage: bench/load-targets.sh [runs] [only]   (only: issue|streams|fanout|steady|soak|redis)
# Every JSON line goes to $OUT (default target/load-targets/<time>/).
# Needs nginx with nchan for 3 (apt-get install nginx libnginx-mod-nchan).
RUNS="${1:-3}"
ONLY="${2:-}"
. "$(dirname "$0")/common.sh" load-targets
NGINX_PID=""
cleanup() {
    pkill -f "sse-ticket serve --bind 127.0.0.1:1818" 2>/dev/null || true
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
    return 0
}

# The server and the generator each need a file per stream.
ulimit -n 20000
export SSE_TICKET_JWT_SECRET="$SECRET"
PORT=18182
URL="http://127.0.0.1:$PORT"

start_server() { # extra serve flags...; sets SERVER_PID
    rm -f "$WORK"/bench.db*
    # 18,000 streams with 20,000 files: above the default stream cap (the
    # open-file limit less a tenth), so it is set.
    "$BIN" serve --bind "127.0.0.1:$PORT" --database-url "sqlite://$WORK/bench.db" --max-streams 19500 "$@" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do curl -sf "$URL/healthz" >/dev/null && return; sleep 0.1; done
    echo "the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1
}
stop_server() {
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true
}
load() { # name, sse-ticket-load arguments...: runs it, keeps its JSON line, prints it
    local name="$1"; shift
    # A missed verdict (exit 1) is a result to report, not a reason to stop.
    "$LOAD" "$@" 2>"$OUT/$name.txt" | tee -a "$OUT/$name.jsonl" \
        || echo "($name: the load generator reported a failure, see $OUT/$name.txt)" >&2
}
median() { # file, jq expression: the median over the file's lines
    jq -s "map($2) | sort | .[(length - 1) / 2 | floor]" "$1"
}
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

if want issue; then
    echo "== 1. /sse-token against /healthz: $RUNS alternating rounds of 8 s, 32 connections"
    start_server
    for _ in $(seq 1 "$RUNS"); do
        load issue-token --url "$URL" issue --duration 8s --connections 32 | jq -c '{path, ok_rps, p99_ms, errors}'
        load issue-healthz --url "$URL" issue --path /healthz --duration 8s --connections 32 | jq -c '{path, ok_rps, p99_ms, errors}'
    done
    stop_server
    t=$(median "$OUT/issue-token.jsonl" .ok_rps); h=$(median "$OUT/issue-healthz.jsonl" .ok_rps)
    echo "median: /sse-token $t req/s, /healthz $h req/s, ratio $(jq -n "$t / $h * 100 | round")%"
fi

if want streams; then
    echo "== 2. 18,000 streams: $RUNS runs, a fresh server each"
    for _ in $(seq 1 "$RUNS"); do
        start_server
        load streams --url "$URL" --server-pid "$SERVER_PID" streams --n 18000 --hold 10s \
            | jq -c '{opened, open_rate, open_p99_ms, rss_before_kb, rss_after_kb, rss_per_stream_bytes, still_open}'
        stop_server
    done
    echo "median: $(median "$OUT/streams.jsonl" .open_rate) opens/s, $(median "$OUT/streams.jsonl" .rss_per_stream_bytes) bytes of RSS per stream"
fi

if want fanout; then
    echo "== 3. one event to 10,000 streams, 5 events 1 s apart: sse-ticket against nginx + nchan, $RUNS alternating rounds"
    command -v nginx >/dev/null || { echo "needs nginx and nchan: apt-get install nginx libnginx-mod-nchan" >&2; exit 1; }
    mkdir -p "$WORK/nginx"
    nginx -c "$PWD/bench/nchan.conf" -p "$WORK/nginx/" &
    NGINX_PID=$!
    for _ in $(seq 1 50); do curl -s -o /dev/null http://127.0.0.1:18090/pub/probe && break; sleep 0.1; done
    for round in $(seq 1 "$RUNS"); do
        start_server
        load fanout-sse-ticket --url "$URL" --server-pid "$SERVER_PID" fanout --subs 10000 --events 5 --rate 1 \
            | jq -c '{target: "sse-ticket", delivered, expected, p50_ms, p99_ms, max_ms, server_cpu_us_per_delivery}'
        stop_server
        load fanout-nchan fanout --subs 10000 --events 5 --rate 1 \
            --raw-sub "http://127.0.0.1:18090/sub/fanout$round" --raw-pub "http://127.0.0.1:18090/pub/fanout$round" \
            | jq -c '{target: "nchan", delivered, expected, p50_ms, p99_ms, max_ms}'
    done
    kill "$NGINX_PID"; wait "$NGINX_PID" || true; NGINX_PID=""
    echo "median p99: sse-ticket $(median "$OUT/fanout-sse-ticket.jsonl" .p99_ms) ms, nchan $(median "$OUT/fanout-nchan.jsonl" .p99_ms) ms"
fi

if want steady; then
    echo "== 4. 100 events/s to 1,000 streams for 10 s: $RUNS runs"
    for _ in $(seq 1 "$RUNS"); do
        start_server
        load steady --url "$URL" fanout --subs 1000 --events 1000 --rate 100 \
            | jq -c '{delivered, expected, p50_ms, p99_ms, max_ms}'
        stop_server
    done
    echo "median: $(median "$OUT/steady.jsonl" .delivered) of $(median "$OUT/steady.jsonl" .expected) delivered, p99 $(median "$OUT/steady.jsonl" .p99_ms) ms"
fi

if want soak; then
    echo "== 5. soak: 60 s of issuing with no redemption, ticket TTL 20 s (three lifetimes): $RUNS runs"
    for _ in $(seq 1 "$RUNS"); do
        start_server --ticket-ttl 20s
        load soak --url "$URL" --server-pid "$SERVER_PID" soak --duration 60s --ticket-ttl 20s \
            | jq -c 'del(.rss_kb)'
        stop_server
    done
fi
if want redis; then
    REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
    echo "== 6. Redis backends ($REDIS_URL) against in-memory: $RUNS alternating rounds of /sse-token (8 s, 32 connections) and one event to 10,000 streams"
    for round in $(seq 1 "$RUNS"); do
        for backend in memory redis; do
            if [ "$backend" = redis ]; then
                start_server --redis-url "$REDIS_URL" --redis-prefix "bench-$(date +%s)-$round:"
            else
                start_server
            fi
            load "backend-issue-$backend" --url "$URL" issue --duration 8s --connections 32 \
                | jq -c "{backend: \"$backend\", path, ok_rps, p99_ms, errors}"
            load "backend-fanout-$backend" --url "$URL" fanout --subs 10000 --events 5 --rate 1 \
                | jq -c "{backend: \"$backend\", delivered, expected, p50_ms, p99_ms, max_ms}"
            stop_server
        done
    done
    for backend in memory redis; do
        echo "median $backend: /sse-token $(median "$OUT/backend-issue-$backend.jsonl" .ok_rps) req/s (p99 $(median "$OUT/backend-issue-$backend.jsonl" .p99_ms) ms); fan-out p50 $(median "$OUT/backend-fanout-$backend.jsonl" .p50_ms) ms, p99 $(median "$OUT/backend-fanout-$backend.jsonl" .p99_ms) ms"
    done
fi
echo "JSON lines and summaries: $OUT"
