#!/usr/bin/env bash
# The server's own instructions per delivered event (user space: ours,
# actix's, tokio's and the allocator's; not the kernel's send), counted by
# callgrind, so that a small change to the fan-out path is measurable on a
# shared or noisy machine: the count does not depend on what else runs.
# S streams on one topic are opened with instrumentation off; it is turned
# on once all are open, E events go out (`sse-ticket-load fanout`), and the
# count is divided by the deliveries. Heartbeats are set to an hour so that
# idle pings are not counted.
#   bench/fanout-callgrind.sh [streams] [events] [server binaries...]
# Default: 1,000 streams, 20 events, this checkout's release build. With
# several binaries, each is measured in turn. Needs valgrind.
set -euo pipefail
SUBS="${1:-1000}"
EVENTS="${2:-20}"
shift 2 || shift $#
. "$(dirname "$0")/common.sh" fanout-callgrind
command -v callgrind_control >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
[ $# -gt 0 ] || set -- "$BIN"
PORT=18403
URL="http://127.0.0.1:$PORT"
export SSE_TICKET_JWT_SECRET="$SECRET" SSE_TICKET_HEARTBEAT=1h
cleanup() { [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null; return 0; }
SERVER_PID=""
metric() { curl -sf "$URL/metrics" | awk -v name="$1" '$1 == name {print $2}'; }
alive() { kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server stopped:" >&2; cat "$WORK/server.log" >&2; exit 1; }; }
for bin in "$@"; do
    rm -f "$WORK"/bench.db* "$WORK"/callgrind.out.*
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out.%p" \
        "$bin" serve --bind "127.0.0.1:$PORT" --database-url "sqlite://$WORK/bench.db" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    until curl -sf "$URL/healthz" >/dev/null; do alive; sleep 0.2; done
    "$LOAD" --url "$URL" fanout --subs "$SUBS" --events "$EVENTS" --rate 5 --settle 20s \
        >"$WORK/load.json" 2>"$WORK/load.txt" &
    load_pid=$!
    until [ "$(metric sse_ticket_streams_open)" = "$SUBS" ]; do
        alive; kill -0 "$load_pid" 2>/dev/null || { echo "the load generator stopped:" >&2; cat "$WORK/load.txt" >&2; exit 1; }
        sleep 0.2
    done
    callgrind_control --instr=on "$SERVER_PID" >/dev/null 2>&1
    wait "$load_pid" || { echo "the load generator failed:" >&2; cat "$WORK/load.txt" >&2; exit 1; }
    callgrind_control --dump "$SERVER_PID" >/dev/null 2>&1
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    delivered=$(jq .delivered "$WORK/load.json")
    total=$(cat "$WORK"/callgrind.out.*.1 | awk '/^summary:/ {s += $2} END {print s}')
    echo "$bin: $delivered deliveries, $total instructions, $((total / delivered)) per delivery" | tee -a "$OUT/results.txt"
    cp "$WORK"/callgrind.out.* "$OUT/" 2>/dev/null || true
done
