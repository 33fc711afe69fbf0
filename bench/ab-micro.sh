#!/usr/bin/env bash
# Compares two builds of the criterion micro-benchmarks (benches/core.rs) in
# alternating rounds, so that both see the same noise from the shared host:
# before, after, before, after, ... and prints, for each benchmark and each
# build, the median over the rounds of criterion's median estimate, with
# every round's figure.
#   bench/ab-micro.sh BEFORE_BIN AFTER_BIN [rounds] [criterion filter]
# The binaries are bench executables (`cargo bench --bench core --no-run`
# prints the path), copied aside so that a rebuild does not replace them.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE="$1"
AFTER="$2"
ROUNDS="${3:-3}"
FILTER="${4:-}"
command -v jq >/dev/null || { echo "needs jq (apt-get install jq)" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
for round in $(seq 1 "$ROUNDS"); do
    for side in before after; do
        echo "round $round of $ROUNDS: $side" >&2
        bin="$BEFORE"; [ "$side" = after ] && bin="$AFTER"
        home="$WORK/$side-$round"
        CRITERION_HOME="$home" "$bin" --bench --warm-up-time 1 --measurement-time 4 $FILTER >/dev/null 2>"$WORK/log"
        for estimates in "$home"/*/*/new/estimates.json; do
            name="${estimates#"$home"/}"; name="${name%/new/estimates.json}"
            jq -c --arg name "$name" --arg side "$side" \
                '{name: $name, side: $side, ns: .median.point_estimate}' "$estimates" >>"$WORK/results"
        done
    done
done
jq -rs 'group_by(.name)[] | group_by(.side) | sort_by(.[0].side == "after")[]
    | (map(.ns)) as $runs | ($runs | sort) as $ns
    | "\(.[0].name)\t\(.[0].side)\t\($ns[($ns | length - 1) / 2 | floor] | . * 10 | round / 10) ns\t(rounds: \($runs | map(. * 10 | round / 10) | join(", ")))"' "$WORK/results" \
    | column -t -s $'\t'
