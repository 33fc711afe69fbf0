#!/usr/bin/env bash
# The published-then-crashed case: a server consuming the outbox is killed
# with SIGKILL at a random moment while rows are coming in and being
# published, KILLS times, restarted after each, then left to drain the
# outbox. Every event is stored in the history (the service's database)
# before any stream receives it, so counting each row's copies there counts
# an upper bound of what streams got: published exactly once, twice or more
# (killed after publishing, before the deletion committed), or lost. With
# TERM as the signal it checks the graceful stop instead.
#   bench/outbox-crash.sh [kills] [rows per kill] [topics] [KILL|TERM]
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS="${1:-20}"
ROWS="${2:-2000}"
TOPICS="${3:-100}"
SIGNAL="${4:-KILL}"
BATCH=100
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
export PGOPTIONS="-c client_min_messages=warning"
BIN=target/release/sse-ticket
cargo build --release --quiet --bin sse-ticket

export SSE_TICKET_JWT_SECRET="bench-secret-$(date +%s)-0123456789abcdef"
export RUST_LOG=warn
WORK="$(mktemp -d)"
SERVER=""
cleanup() {
    if [ -n "$SERVER" ]; then kill -KILL "$SERVER" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for db in outbox_crash_svc outbox_crash_app; do
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
done
APP="$PG/outbox_crash_app"
waiting() { psql -qtA "$APP" -c "SELECT count(*) FROM sse_outbox"; }

start() {
    $BIN serve --bind 127.0.0.1:18195 --database-url "$PG/outbox_crash_svc" \
        --outbox-url "$APP" --history-max-per-topic 1000000 >>"$WORK/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18195/readyz >/dev/null && return; sleep 0.05; done
    echo "the server did not become ready" >&2
    exit 1
}

inserts() { # first row, rows: transactions of BATCH rows, back to back
    local first="$1" rows="$2" from
    for ((from = first; from < first + rows; from += BATCH)); do
        echo "INSERT INTO sse_outbox (topic, data) SELECT 'crash/' || (n % $TOPICS), jsonb_build_object('n', n) FROM generate_series($from, $((from + BATCH - 1))) AS n;"
    done | psql -q "$APP" -v ON_ERROR_STOP=1
}

busy=0
for kill in $(seq 1 "$KILLS"); do
    start
    inserts $(((kill - 1) * ROWS)) "$ROWS" &
    inserter=$!
    # A random moment while the rows come in and are published: 10 to 300 ms.
    sleep "0.$(printf '%03d' $((10 + RANDOM % 291)))"
    before=$(waiting)
    kill -"$SIGNAL" "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
    wait "$inserter"
    if [ "$before" -gt 0 ]; then busy=$((busy + 1)); fi
    echo "kill $kill: $before rows were waiting"
done
start
for _ in $(seq 1 600); do [ "$(waiting)" -eq 0 ] && break; sleep 0.1; done
left=$(waiting)
kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""

total=$((KILLS * ROWS))
read -r once twice more stored <<<"$(psql -qtA -F ' ' "$PG/outbox_crash_svc" -c "
    WITH copies AS (SELECT (data::jsonb->>'n')::int AS n, count(*) AS c FROM events GROUP BY 1)
    SELECT count(*) FILTER (WHERE c = 1), count(*) FILTER (WHERE c = 2),
           count(*) FILTER (WHERE c > 2), count(*) FROM copies")"
dead=$(psql -qtA "$APP" -c "SELECT count(*) FROM sse_outbox_dead")
lost=$((total - stored - left - dead))
echo "rows: $total in $KILLS runs stopped by SIG$SIGNAL at random ($busy with rows waiting), then drained"
echo "published exactly once: $once; twice: $twice; three times or more: $more; lost: $lost; left in the outbox: $left; dead-lettered: $dead"
for db in outbox_crash_svc outbox_crash_app; do
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done
