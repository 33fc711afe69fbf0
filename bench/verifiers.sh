#!/usr/bin/env bash
# What an upstream verifier adds to POST /sse-token: one run of the load
# generator's `verifiers` mode, which alternates three kinds of request, one
# at a time, each on its own keep-alive connection:
#   local_key               a JWT checked with the HMAC secret (server A)
#   introspection_cached    an opaque token whose introspection answer is cached (server B)
#   introspection_uncached  a new opaque token each time: one introspection call (server B)
# Server B's introspection endpoint is a stub served by the load generator
# itself, answering at once. Usage: bench/verifiers.sh [rounds]
# Everything on 127.0.0.1; the JSON line goes to $OUT (default target/verifiers/<time>/).
ROUNDS="${1:-3000}"
. "$(dirname "$0")/common.sh" verifiers
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
STUB=127.0.0.1:18190
start() { # name, port, serve flags...
    local name="$1" port="$2"; shift 2
    "$BIN" serve --bind "127.0.0.1:$port" --database-url "sqlite://$WORK/$name.db" \
        --max-tickets-per-subject 1000000 "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.1; done
    echo "server $name did not start:" >&2; cat "$WORK/$name.log" >&2; exit 1
}
start local 18183 --jwt-secret "$SECRET"
start remote 18184 --introspection-url "http://$STUB/introspect"

echo "== /sse-token: local key against introspection (cached, uncached), $ROUNDS alternating rounds"
"$LOAD" --url http://127.0.0.1:18183 --secret "$SECRET" verifiers \
    --remote-url http://127.0.0.1:18184 --stub-bind "$STUB" --rounds "$ROUNDS" \
    | tee "$OUT/verifiers.jsonl"
