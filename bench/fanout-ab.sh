#!/usr/bin/env bash
# One event to 10,000 streams (bench/load-targets.sh's fanout section, nginx +
# nchan included) with two builds of the server in alternating rounds, so
# that both see the same noise: before, after, before, after, ... Prints, for
# each build, the median over the rounds of the delivery p99, nchan's p99 in
# the same rounds, and the server's CPU per delivery (from /proc/<pid>/stat
# while the events go out), with every round's figure.
#   bench/fanout-ab.sh BEFORE_BIN AFTER_BIN [rounds]
# The binaries are `sse-ticket` servers, copied aside so that a rebuild does
# not replace them. Needs nginx with nchan (apt-get install nginx libnginx-mod-nchan).
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE="$1"
AFTER="$2"
ROUNDS="${3:-5}"
ROOT="$PWD/target/fanout-ab/$(date +%Y%m%dT%H%M%S)"
for round in $(seq 1 "$ROUNDS"); do
    for side in before after; do
        echo "round $round of $ROUNDS: $side" >&2
        bin="$BEFORE"; [ "$side" = after ] && bin="$AFTER"
        SERVER="$bin" OUT="$ROOT/$side" bench/load-targets.sh 1 fanout >/dev/null
    done
done
rounds() { # file, jq field: the median over the rounds, then every round's figure
    jq -rs --arg f "$2" 'map(.[$f]) | "\(sort | .[(length - 1) / 2 | floor]) (\(join(" · ")))"' "$1"
}
for side in before after; do
    echo "$side: p99 $(rounds "$ROOT/$side/fanout-sse-ticket.jsonl" p99_ms) ms," \
        "server CPU per delivery $(rounds "$ROOT/$side/fanout-sse-ticket.jsonl" server_cpu_us_per_delivery) µs"
    echo "  nchan in the same rounds: p99 $(rounds "$ROOT/$side/fanout-nchan.jsonl" p99_ms) ms"
done
echo "JSON lines: $ROOT"
