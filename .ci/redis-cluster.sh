#!/usr/bin/env bash
# Starts a throwaway Redis Cluster (3 masters + 3 replicas, no persistence)
# under the directory given as $1, from redis-server binaries on ports
# 7301..7306, and prints its seed list (comma-separated redis:// URLs).
# Stop it with: kill $(cat "$1"/*/pid)
set -euo pipefail
dir="$1"
mkdir -p "$dir"
ports=(7301 7302 7303 7304 7305 7306)
for port in "${ports[@]}"; do
    mkdir -p "$dir/$port"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir/$port" \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --save "" --appendonly no --daemonize yes \
        --logfile "$dir/$port/log" --pidfile "$dir/$port/pid" >/dev/null
done
for port in "${ports[@]}"; do
    for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") \
    --cluster-replicas 1 --cluster-yes >/dev/null
for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do
        redis-cli -p "$port" cluster info 2>/dev/null | grep -q cluster_state:ok && break
        sleep 0.1
    done
done
printf 'redis://127.0.0.1:%s,' "${ports[@]}" | sed 's/,$//'
