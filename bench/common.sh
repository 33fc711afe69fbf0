# Sourced by the bench scripts, with the name of the run:
#   . "$(dirname "$0")/common.sh" scale-out
# Moves to the repository, builds the release binaries and sets BIN (the
# server; SERVER=<path> runs another build, an older commit's to compare),
# LOAD (the load generator), OUT (where the JSON lines go; default
# target/<name>/<time>/), WORK (a temporary directory), SECRET (an HS256 key
# for the run) and RUST_LOG=warn. At exit it calls the script's `cleanup`,
# if it defines one, then removes WORK.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet --workspace
BIN="${SERVER:-$PWD/target/release/sse-ticket}"
LOAD="$PWD/target/release/sse-ticket-load"
OUT="${OUT:-$PWD/target/$1/$(date +%Y%m%dT%H%M%S)}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
SECRET="bench-secret-$(date +%s)-0123456789abcdef"
export RUST_LOG=warn
bench_exit() {
    if declare -F cleanup >/dev/null; then cleanup; fi
    rm -rf "$WORK"
}
trap bench_exit EXIT
