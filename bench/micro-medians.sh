#!/usr/bin/env bash
# Runs the criterion micro-benchmarks (benches/core.rs) several times and
# prints, for each benchmark, the median over the runs of criterion's own
# median estimate, with every run's figure.
#   bench/micro-medians.sh [runs] [criterion filter]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
FILTER="${2:-}"
command -v jq >/dev/null || { echo "needs jq (apt-get install jq)" >&2; exit 1; }
RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS"' EXIT
for run in $(seq 1 "$RUNS"); do
    echo "run $run of $RUNS" >&2
    cargo bench --quiet --bench core -- --warm-up-time 1 --measurement-time 4 $FILTER >/dev/null
    for estimates in target/criterion/*/*/new/estimates.json; do
        name="${estimates#target/criterion/}"; name="${name%/new/estimates.json}"
        jq -c --arg name "$name" '{name: $name, ns: .median.point_estimate}' "$estimates" >>"$RESULTS"
    done
done
jq -rs 'group_by(.name)[] | (map(.ns) | sort) as $ns
    | "\(.[0].name)\t\($ns[($ns | length - 1) / 2 | floor] | . * 1000 | round / 1000) ns\t(runs: \($ns | map(. * 10 | round / 10) | join(", ")))"' "$RESULTS" \
    | column -t -s $'\t'
