#!/usr/bin/env bash
# The per-stream and per-event costs the fleet guide's capacity table is
# computed from, measured on one instance on a Redis node of its own
# (127.0.0.1:7402) and Postgres ($POSTGRES_URL, default the CI's):
#   1. streams: 10,000 idle streams held 30 s (a subject and topic each):
#      server RSS per stream, server CPU per stream opened and per stream
#      held a second (heartbeats), and Redis memory per stream (a shard
#      channel each);
#   2. rooms: one event to 10,000 streams of one topic, 100 events at 20/s:
#      server CPU per delivery;
#   3. per-user events: 1,000 streams on topics of their own, 10 events to
#      each: server CPU per event (the publish, its history row, its
#      SPUBLISHes, and its delivery to one stream).
# For what one Redis shard forwards, see bench/redis-pubsub.sh.
# Usage: bench/capacity.sh   (JSON lines in $OUT, default target/capacity/<time>/)
POSTGRES_URL="${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
. "$(dirname "$0")/common.sh" capacity
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null
    [ -f "$WORK/redis.pid" ] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null
    return 0
}
ulimit -n 20000
export SSE_TICKET_JWT_SECRET="$SECRET"
URL=http://127.0.0.1:18291
redis-server --bind 127.0.0.1 --port 7402 --dir "$WORK" --save "" --appendonly no \
    --daemonize yes --logfile "$WORK/redis.log" --pidfile "$WORK/redis.pid" >/dev/null
for _ in $(seq 1 50); do redis-cli -p 7402 ping >/dev/null 2>&1 && break; sleep 0.1; done
redis_memory() { redis-cli -p 7402 info memory | tr -d '\r' | sed -n 's/^used_memory://p'; }
start_server() {
    "$BIN" serve --bind 127.0.0.1:18291 --database-url "$POSTGRES_URL" \
        --redis-url redis://127.0.0.1:7402 --redis-prefix "bench-capacity-$RANDOM:" \
        --max-streams 19000 >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do curl -sf "$URL/readyz" >/dev/null && return; sleep 0.1; done
    echo "the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1
}
stop_server() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""; }

echo "== 1. 10,000 idle streams, held 30 s"
start_server
before=$(redis_memory)
"$LOAD" --url "$URL" --secret "$SECRET" --server-pid "$SERVER_PID" streams --n 10000 --hold 30s \
    2>"$OUT/streams.txt" >"$WORK/streams.json" &
load=$!
# Redis's memory while the streams are held: once all are open, 10 s into the hold.
streams_open() { curl -s "$URL/metrics" | sed -n 's/^sse_ticket_streams_open //p'; }
for _ in $(seq 1 600); do [ "$(streams_open)" = "10000" ] && break; sleep 0.1; done
sleep 10
during=$(redis_memory)
wait "$load"
jq -c --argjson redis "$(( (during - before) / 10000 ))" \
    '{opened, rss_per_stream_bytes, open_cpu_us_per_stream: (.open_cpu_s / .opened * 1e6 | round),
      hold_cpu_us_per_stream_second: (.hold_cpu_s / .opened / .hold_s * 1e6 * 1000 | round / 1000),
      redis_bytes_per_stream: $redis}' "$WORK/streams.json" | tee "$OUT/streams.jsonl"
stop_server

echo "== 2. rooms: one event to 10,000 streams, 100 events at 20/s"
start_server
"$LOAD" --url "$URL" --secret "$SECRET" --server-pid "$SERVER_PID" fanout --subs 10000 \
    --events 100 --rate 20 2>"$OUT/fanout.txt" \
    | jq -c '{delivered, expected, p50_ms, p99_ms, server_cpu_s, server_cpu_us_per_delivery}' \
    | tee "$OUT/fanout.jsonl"
stop_server

echo "== 3. per-user events: 1,000 streams on topics of their own, 10 events each"
start_server
"$LOAD" --url "$URL" --secret "$SECRET" scaleout --pids "$SERVER_PID" --streams 1000 --events 10 \
    2>"$OUT/per-user.txt" \
    | jq -c '{published, delivered, publish_s, cpu_s: .cpu_s_per_instance[0],
              cpu_us_per_event: (.cpu_s_per_instance[0] / .published * 1e6 | round)}' \
    | tee "$OUT/per-user.jsonl"
stop_server
echo "JSON lines: $OUT"
