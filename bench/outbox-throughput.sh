#!/usr/bin/env bash
# Outbox throughput end to end: ROWS rows inserted into the app's outbox, in
# transactions of BATCH rows spread over TOPICS topics, timed from the first
# insert until one stream subscribed to every topic has received the last of
# them. Three set-ups, in alternating rounds, the median of each: one instance
# with the in-process broker, then one and two instances on one Redis (the
# stream on the first; the second's events reach it through Redis). The
# service's database and the app's are two databases of the local Postgres,
# made afresh for every run. Traffic stays on 127.0.0.1.
#   bench/outbox-throughput.sh [rounds] [rows] [topics] [batch]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
ROWS="${2:-20000}"
TOPICS="${3:-100}"
BATCH="${4:-500}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
export PGOPTIONS="-c client_min_messages=warning"
REDIS="${REDIS:-redis://127.0.0.1:6379/0}"
BIN=target/release/sse-ticket
cargo build --release --quiet --bin sse-ticket

export SSE_TICKET_JWT_SECRET="bench-secret-$(date +%s)-0123456789abcdef"
export RUST_LOG=warn
TOKEN="$($BIN mint --sub bench --subscribe 'bench/*')"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The inserts, one transaction each, as the app would commit them.
for ((first = 0; first < ROWS; first += BATCH)); do
    echo "INSERT INTO sse_outbox (topic, event, data) SELECT 'bench/' || (n % $TOPICS), 'tick', jsonb_build_object('n', n) FROM generate_series($first, $((first + BATCH - 1 < ROWS - 1 ? first + BATCH - 1 : ROWS - 1))) AS n;"
done > "$WORK/inserts.sql"

fresh_db() { # name
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
}

now() { date +%s.%N; }

run() { # instances, broker (memory|redis)
    local instances="$1" broker="$2" prefix="bench-outbox-$RANDOM$RANDOM:"
    fresh_db outbox_bench_svc
    fresh_db outbox_bench_app
    PIDS=()
    for i in $(seq 1 "$instances"); do
        local args=(serve --bind "127.0.0.1:1819$i" --database-url "$PG/outbox_bench_svc"
            --outbox-url "$PG/outbox_bench_app" --history-max-per-topic 100000)
        if [ "$broker" = redis ]; then args+=(--redis-url "$REDIS" --redis-prefix "$prefix"); fi
        $BIN "${args[@]}" >"$WORK/server-$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in $(seq 1 "$instances"); do
        for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:1819$i/readyz" >/dev/null && break; sleep 0.1; done
    done
    local url
    url=$(curl -sf http://127.0.0.1:18191/sse-token -H "Authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' -d '{"topics":["bench/*"]}' | jq -r .stream_url)
    curl -sN "http://127.0.0.1:18191$url" >"$WORK/stream.txt" &
    local reader=$!
    until grep -q '^event: ready' "$WORK/stream.txt" 2>/dev/null; do sleep 0.01; done

    local start end inserted got
    start=$(now)
    psql -q "$PG/outbox_bench_app" -v ON_ERROR_STOP=1 -f "$WORK/inserts.sql"
    inserted=$(now)
    while got=$(grep -c '^id:' "$WORK/stream.txt"); [ "$got" -lt "$ROWS" ]; do
        if grep -q '^event: close' "$WORK/stream.txt"; then
            echo "the stream was closed: $(grep -A1 '^event: close' "$WORK/stream.txt" | tail -1)" >&2
            break
        fi
        if awk -v s="$start" -v n="$(now)" 'BEGIN {exit !(n - s > 300)}'; then
            echo "only $got of $ROWS events after 300 s" >&2
            break
        fi
        sleep 0.02
    done
    end=$(now)
    kill "$reader" 2>/dev/null || true
    local left split=""
    left=$(psql -qtA "$PG/outbox_bench_app" -c "SELECT count(*) FROM sse_outbox")
    for i in $(seq 1 "$instances"); do
        split+=" $(curl -s "http://127.0.0.1:1819$i/metrics" | awk '/^sse_ticket_outbox_published_total / {print $2}')"
    done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid"; done
    wait "${PIDS[@]}" 2>/dev/null || true
    wait "$reader" 2>/dev/null || true
    echo "$instances-$broker: $got events in $(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.2f", e - s}') s (inserts took $(awk -v s="$start" -v e="$inserted" 'BEGIN {printf "%.2f", e - s}') s; rows published per instance:$split; $left rows left)" >&2
    awk -v s="$start" -v e="$end" -v n="$got" 'BEGIN {printf "%.0f\n", n / (e - s)}'
}

declare -A results
for round in $(seq 1 "$ROUNDS"); do
    for setup in "1 memory" "1 redis" "2 redis"; do
        read -r instances broker <<<"$setup"
        rate=$(run "$instances" "$broker")
        results["$instances-$broker"]+="$rate "
        echo "round $round: $instances instance(s), $broker broker: $rate rows/s"
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median of $ROUNDS rounds, $ROWS rows over $TOPICS topics in transactions of $BATCH rows:"
for setup in 1-memory 1-redis 2-redis; do
    # shellcheck disable=SC2086
    echo "  $setup: $(median ${results[$setup]}) rows/s (rounds: ${results[$setup]})"
done
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS outbox_bench_svc WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS outbox_bench_app WITH (FORCE)" >/dev/null
