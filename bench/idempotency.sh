#!/usr/bin/env bash
# The cost of an Idempotency-Key on POST /publish: requests/s and p99 with no
# key, with a fresh key per request (each one claims a key, publishes, marks
# it done) and with one key for the whole run (every request after the first
# is a replay), on each store of the keys: the database's (SQLite, the
# default; Postgres) and Redis's (a redis-server of the script's own, history
# in SQLite). A fresh server per store, key mode and round; rounds alternate
# the modes; the median of each. `sse-ticket-load issue --path /publish`, 32
# connections. Traffic stays on 127.0.0.1.
#   bench/idempotency.sh [rounds] [seconds] [store...]   (sqlite postgres redis)
. "$(dirname "$0")/common.sh" idempotency
ROUNDS="${1:-3}"
SECONDS_PER_RUN="${2:-10}"
shift 2 || shift $#
STORES=("$@")
[ ${#STORES[@]} -gt 0 ] || STORES=(sqlite postgres redis)
POSTGRES_URL="${SSE_TICKET_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS_PORT=16399
PORT=18183
BODY='{"topic":"bench/orders","event":"order.updated","data":{"id":42,"status":"shipped","note":"a typical small event"}}'
export SSE_TICKET_JWT_SECRET="$SECRET"
TOKEN="$("$BIN" mint --sub bench --publish '*')"

REDIS_PID=
cleanup() {
    if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; fi
}
if [[ " ${STORES[*]} " == *" redis "* ]]; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
    REDIS_PID=$!
    for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

run() { # store, keys, round -> "<2xx per s> <p99 ms>"
    local store="$1" keys="$2" round="$3" schema="" flags=()
    rm -f "$WORK"/bench.db*
    case "$store" in
        sqlite) flags=(--database-url "sqlite://$WORK/bench.db") ;;
        postgres)
            schema="bench_idem_$$_${keys}_$round"
            psql -q "$POSTGRES_URL" -c "CREATE SCHEMA $schema" >/dev/null
            flags=(--database-url "$POSTGRES_URL?options=-c%20search_path%3D$schema") ;;
        redis)
            redis-cli -p "$REDIS_PORT" flushall >/dev/null
            flags=(--database-url "sqlite://$WORK/bench.db" --redis-url "redis://127.0.0.1:$REDIS_PORT") ;;
    esac
    "$BIN" serve --bind "127.0.0.1:$PORT" "${flags[@]}" >"$WORK/serve.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
    local line="$OUT/$store-$keys-$round.json"
    "$LOAD" --url "http://127.0.0.1:$PORT" --token "$TOKEN" issue --path /publish --body "$BODY" \
        --connections 32 --duration "${SECONDS_PER_RUN}s" --idempotency-key "$keys" \
        >"$line" 2>"$OUT/$store-$keys-$round.txt"
    curl -s "http://127.0.0.1:$PORT/metrics" | grep '^sse_ticket_idempotency_total' \
        >"$OUT/$store-$keys-$round.metrics" || true
    kill -TERM "$pid"; wait "$pid" || true
    if [ -n "$schema" ]; then psql -q "$POSTGRES_URL" -c "DROP SCHEMA $schema CASCADE" >/dev/null; fi
    if [ "$(jq -c .errors "$line")" != "{}" ]; then
        echo "$store $keys round $round: errors $(jq -c .errors "$line")" >&2
    fi
    jq -r '"\(.ok_rps | round) \(.p99_ms)"' "$line"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for store in "${STORES[@]}"; do
    declare -A rps=() p99=()
    for round in $(seq 1 "$ROUNDS"); do
        for keys in none fresh repeat; do
            read -r r p <<<"$(run "$store" "$keys" "$round")"
            rps[$keys]+="$r "; p99[$keys]+="$p "
            echo "$store round $round, key $keys: $r req/s, p99 $p ms"
        done
    done
    for keys in none fresh repeat; do
        # shellcheck disable=SC2086
        echo "median $store, key $keys: $(median ${rps[$keys]}) req/s (rounds ${rps[$keys]% }), p99 $(median ${p99[$keys]}) ms (rounds ${p99[$keys]% })"
    done
    unset rps p99
done
echo "JSON lines and /metrics samples under $OUT"
