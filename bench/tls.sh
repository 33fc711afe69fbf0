#!/usr/bin/env bash
# /sse-token over TLS + HTTP/2 against plain HTTP/1.1, in alternating rounds of
# one run, with h2load (Debian's nghttp2-client) as the client for both.
# Usage: bench/tls.sh [rounds] [seconds]
# Each round starts a fresh server (SQLite in a temporary directory,
# RUST_LOG=warn) and runs, one after the other:
#   h1   plain HTTP/1.1, 32 connections, one request at a time on each
#   h2   TLS + HTTP/2,   32 connections, one request at a time on each
#   h2x8 TLS + HTTP/2,    4 connections, 8 concurrent streams on each (how a browser multiplexes)
# One bearer token for every request, so the per-subject cap is lifted and the
# ticket TTL shortened to keep the store from filling.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
SECONDS_PER_RUN="${2:-8}"
command -v h2load >/dev/null || { echo "needs h2load: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --release --quiet
BIN="$PWD/target/release/sse-ticket"
WORK="$(mktemp -d)"
OUT="${OUT:-$PWD/target/tls-bench/$(date +%Y%m%dT%H%M%S)}"
mkdir -p "$OUT"
trap 'pkill -f "sse-ticket serve --bind 127.0.0.1:1819" 2>/dev/null || true; rm -rf "$WORK"' EXIT

export SSE_TICKET_JWT_SECRET="bench-secret-$(date +%s)-0123456789abcdef"
export RUST_LOG=warn
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
TOKEN="$("$BIN" mint --sub bench --ttl 1h)"
echo '{"topics":[]}' >"$WORK/body.json"

run() { # name, scheme, h2load flags...: starts a server, runs h2load, keeps its output
    local name="$1" scheme="$2"; shift 2
    local port=18190 tls=()
    [ "$scheme" = https ] && tls=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")
    rm -f "$WORK"/bench.db*
    "$BIN" serve --bind "127.0.0.1:$port" --database-url "sqlite://$WORK/bench.db" \
        --max-tickets-per-subject 100000000 --max-tickets 100000000 --ticket-ttl 5s "${tls[@]}" \
        >"$WORK/server.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do curl -skf "$scheme://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    h2load "$@" -D "$SECONDS_PER_RUN" --warm-up-time 1 -d "$WORK/body.json" \
        -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        "$scheme://127.0.0.1:$port/sse-token" >"$OUT/$name.$round.txt" 2>&1 || true
    kill -TERM "$pid"; wait "$pid" || true
    local rps codes protocol
    rps=$(grep -oP 'finished in [0-9.]+s, \K[0-9.]+(?= req/s)' "$OUT/$name.$round.txt" || echo 0)
    codes=$(grep -oP 'status codes: \K.*' "$OUT/$name.$round.txt" || echo '?')
    protocol=$(grep -oP 'Application protocol: \K\S+' "$OUT/$name.$round.txt" || echo http/1.1)
    echo "$rps" >>"$OUT/$name.rps"
    printf '%-5s round %s: %9s req/s  (%s; status codes %s)\n' "$name" "$round" "$rps" "$protocol" "$codes"
}
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for round in $(seq 1 "$ROUNDS"); do
    run h1 http --h1 -c 32 -m 1
    run h2 https -c 32 -m 1
    run h2x8 https -c 4 -m 8
done
echo "median req/s: h1 $(median "$OUT/h1.rps"), h2 $(median "$OUT/h2.rps"), h2x8 $(median "$OUT/h2x8.rps")"
echo "outputs: $OUT"
