#!/usr/bin/env bash
# What one Redis shard forwards: SPUBLISH throughput of a throwaway
# redis-server (127.0.0.1:7403, no persistence) with 0, 1, 4 and 16
# subscribers on the channel (each a `redis-cli SSUBSCRIBE` whose output is
# discarded, standing for an instance), a 200-byte payload (an event as it
# travels, about the size of a small JSON event), redis-benchmark with 4
# connections pipelining 16 commands. The median of 3 runs per row; every
# message a subscriber receives is one delivery out of Redis.
# Usage: bench/redis-pubsub.sh [requests per run]
# The subscribers, redis-benchmark and Redis share the machine's cores.
set -euo pipefail
REQUESTS="${1:-500000}"
PORT=7403
WORK="$(mktemp -d)"
SUBSCRIBERS=()
cleanup() {
    for pid in "${SUBSCRIBERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/pid" ] && kill "$(cat "$WORK/pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

redis-server --bind 127.0.0.1 --port "$PORT" --dir "$WORK" --save "" --appendonly no \
    --daemonize yes --logfile "$WORK/log" --pidfile "$WORK/pid" >/dev/null
for _ in $(seq 1 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "$(redis-server --version | cut -d' ' -f1-3), $(nproc) cores"

CHANNEL='bench:events:{user/alice}'
PAYLOAD="$(head -c 200 /dev/zero | tr '\0' x)"
echo "| subscribers | SPUBLISH/s (median of 3) | deliveries/s | runs |"
echo "|---|---|---|---|"
for subs in 0 1 4 16; do
    for _ in $(seq 1 "$subs"); do
        redis-cli -p "$PORT" SSUBSCRIBE "$CHANNEL" >/dev/null &
        SUBSCRIBERS+=($!)
    done
    # Wait until Redis counts every subscriber.
    for _ in $(seq 1 100); do
        [ "$(redis-cli -p "$PORT" PUBSUB SHARDNUMSUB "$CHANNEL" | tail -1)" = "$subs" ] && break
        sleep 0.05
    done
    runs=()
    for _ in 1 2 3; do
        runs+=("$(redis-benchmark -p "$PORT" -n "$REQUESTS" -c 4 -P 16 --csv \
            SPUBLISH "$CHANNEL" "$PAYLOAD" | tail -1 | cut -d, -f2 | tr -d '"' | cut -d. -f1)")
    done
    median=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p)
    echo "| $subs | $median | $((median * subs)) | ${runs[*]} |"
    for pid in "${SUBSCRIBERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait "${SUBSCRIBERS[@]}" 2>/dev/null || true
    SUBSCRIBERS=()
done
