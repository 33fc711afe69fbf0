#!/usr/bin/env bash
# Issue #17's targets in one run, each with its verdict: bench/load-targets.sh's
# issue, streams, fanout (against nginx + nchan, alternating rounds) and redis
# sections into one directory, then the ticket store's criterion benchmarks
# (bench/micro-medians.sh), then the table. Every figure is the median of
# the runs. Usage: bench/round-two.sh [runs]   (≈ 12 minutes with 3)
# Needs nginx with nchan (apt-get install nginx libnginx-mod-nchan), Redis at
# $REDIS_URL (default redis://127.0.0.1:6379/0) and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
export OUT="${OUT:-$PWD/target/round-two/$(date +%Y%m%dT%H%M%S)}"
mkdir -p "$OUT"
for section in issue streams fanout redis; do
    bench/load-targets.sh "$RUNS" "$section"
done
bench/micro-medians.sh "$RUNS" ticket_store | tee "$OUT/micro.txt"

median() { # file, jq expression
    jq -s "map($2) | sort | .[(length - 1) / 2 | floor]" "$OUT/$1"
}
micro_ns() { # a fixed string naming one benchmark: its median in ns
    grep -F "$1" "$OUT/micro.txt" | head -1 | awk '{for (i = 1; i < NF; i++) if ($(i + 1) == "ns") {print $i; exit}}'
}
verdict() { # value, comparison (<= or >=), target
    if jq -en "$1 $2 $3" >/dev/null; then echo "met"; else echo "missed"; fi
}
rss=$(median streams.jsonl .rss_per_stream_bytes)
opens=$(median streams.jsonl .open_rate)
fanout=$(median fanout-sse-ticket.jsonl .p99_ms)
nchan=$(median fanout-nchan.jsonl .p99_ms)
token=$(median issue-token.jsonl .ok_rps)
healthz=$(median issue-healthz.jsonl .ok_rps)
memory=$(median backend-issue-memory.jsonl .ok_rps)
redis=$(median backend-issue-redis.jsonl .ok_rps)
one=$(micro_ns "1 thread")
two=$(micro_ns "2 threads contending")
ratio() { jq -n "$1 / $2 * 100 | round / 100"; }

echo
echo "| what | measured (median of $RUNS) | target | verdict |"
echo "|---|---|---|---|"
echo "| server RSS per idle stream at 18,000 | $rss bytes | ≤ 6,144 bytes | $(verdict "$rss" "<=" 6144) |"
echo "| one event → 10,000 streams, p99 ÷ nchan's | $fanout ÷ $nchan ms = $(ratio "$fanout" "$nchan") | ≤ 0.8 | $(verdict "$(ratio "$fanout" "$nchan")" "<=" 0.8) |"
echo "| \`/sse-token\` ÷ \`/healthz\` | $token ÷ $healthz req/s = $(ratio "$token" "$healthz") | ≥ 0.6 | $(verdict "$(ratio "$token" "$healthz")" ">=" 0.6) |"
echo "| stream opens/s (ticket + connect + \`ready\`) | $opens | ≥ 10,000 | $(verdict "$opens" ">=" 10000) |"
echo "| \`/sse-token\` through Redis ÷ in-memory | $redis ÷ $memory req/s = $(ratio "$redis" "$memory") | ≥ 0.7 | $(verdict "$(ratio "$redis" "$memory")" ">=" 0.7) |"
echo "| issue + redeem, 2 threads contending ÷ 1 thread, per op | $two ÷ $one ns = $(ratio "$two" "$one") | ≤ 1 | $(verdict "$(ratio "$two" "$one")" "<=" 1) |"
echo "JSON lines: $OUT"
