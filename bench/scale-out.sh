#!/usr/bin/env bash
# Fan-out that scales out, measured. For N = 1, 2, 4 and 8 instances, first
# on one Redis node, then on a Redis Cluster (3 masters + 3 replicas), all
# sharing one Postgres: each instance holds S streams on topics of its own
# (`user/<sub>`, a subject per stream), every topic gets E events, each
# published on the next instance (the load generator's `scaleout` mode).
# Prints, per run, the events published in all, what each instance received
# from Redis (sse_ticket_broker_events_received_total) and the CPU each
# instance spent from the first publish to the last delivery.
# Usage: bench/scale-out.sh [streams per instance] [events per topic]
# Needs redis-server 7+ and redis-cli, and Postgres at $POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432/test). Uses ports 18281-18288,
# 7402 (the single node) and 7301-7306 (the cluster); everything on 127.0.0.1.
# The JSON lines go to $OUT (default target/scale-out/<time>/); SERVER=<path>
# runs another build of the server (an older commit's, to compare).
STREAMS="${1:-200}"
EVENTS="${2:-10}"
POSTGRES_URL="${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
. "$(dirname "$0")/common.sh" scale-out
PIDS=()
stop_instances() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    stop_instances
    local redis=()
    for pidfile in "$WORK"/*/pid "$WORK"/*/*/pid; do
        [ -f "$pidfile" ] && redis+=("$(cat "$pidfile")")
    done
    for pid in "${redis[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${redis[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; done
}
export SSE_TICKET_JWT_SECRET="$SECRET"
start_instances() { # count, redis URL, cluster (true|false)
    local count="$1" redis="$2" cluster="$3" prefix="bench-scale-$RANDOM:"
    for i in $(seq 1 "$count"); do
        local port=$((18280 + i))
        "$BIN" serve --bind "127.0.0.1:$port" --database-url "$POSTGRES_URL" \
            --redis-url "$redis" --redis-cluster "$cluster" --redis-prefix "$prefix" \
            >"$WORK/instance-$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in $(seq 1 "$count"); do
        local port=$((18280 + i)) ready=""
        for _ in $(seq 1 100); do
            curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && ready=1 && break
            sleep 0.1
        done
        [ -n "$ready" ] || { echo "instance $i did not start:" >&2; cat "$WORK/instance-$i.log" >&2; exit 1; }
    done
}
measure() { # backend name, redis URL, cluster (true|false)
    local backend="$1" redis="$2" cluster="$3"
    for n in 1 2 4 8; do
        start_instances "$n" "$redis" "$cluster"
        local others=()
        for i in $(seq 2 "$n"); do others+=(--other "http://127.0.0.1:$((18280 + i))"); done
        "$LOAD" --url http://127.0.0.1:18281 --secret "$SECRET" scaleout "${others[@]}" \
            --pids "$(IFS=,; echo "${PIDS[*]}")" --streams "$STREAMS" --events "$EVENTS" \
            2>"$OUT/$backend-$n.txt" \
            | jq -c --arg backend "$backend" '. + {backend: $backend}' \
            | tee -a "$OUT/scale-out.jsonl" \
            | jq -r '"\(.backend) N=\(.instances): published \(.published), received per instance \(.received_per_instance | min)–\(.received_per_instance | max) (own \(.own_events_per_instance)), delivered \(.delivered)/\(.expected), CPU per instance \(.cpu_s_per_instance | min)–\(.cpu_s_per_instance | max) s"'
        stop_instances
    done
}

echo "== one Redis node (redis-server on 127.0.0.1:7402): $STREAMS streams per instance, $EVENTS events per topic"
mkdir -p "$WORK/single"
redis-server --bind 127.0.0.1 --port 7402 --dir "$WORK/single" --save "" --appendonly no \
    --daemonize yes --logfile "$WORK/single/log" --pidfile "$WORK/single/pid" >/dev/null
for _ in $(seq 1 50); do redis-cli -p 7402 ping >/dev/null 2>&1 && break; sleep 0.1; done
measure single redis://127.0.0.1:7402 false

echo "== a Redis Cluster (3 masters + 3 replicas, 127.0.0.1:7301-7306)"
SEEDS="$(.ci/redis-cluster.sh "$WORK/cluster")"
measure cluster "$SEEDS" true
echo "JSON lines: $OUT/scale-out.jsonl"
