#!/usr/bin/env bash
# vendor/actix-http is the published actix-http 3.19.0 plus
# vendor/actix-http.patch, nothing else: fetches the published crate with
# cargo (crates.io, checksum from its index), applies the patch, and fails
# with the difference when the result is not vendor/actix-http.
#
#   .ci/vendor-check.sh               check
#   .ci/vendor-check.sh --regenerate  rewrite vendor/actix-http.patch from vendor/actix-http
#
# Left out of the vendored copy (removed from the published tree before the
# comparison, not part of the patch): the crate's benches, examples, tests,
# Cargo.lock, and cargo's packaging records Cargo.toml.orig and
# .cargo_vcs_info.json. Not compared: vendor/actix-http/PATCHED.md, which
# describes the patch.
set -euo pipefail
cd "$(dirname "$0")/.."

CRATE=actix-http
VERSION=3.19.0
# sha256 of actix-http-3.19.0.crate, as the crates.io index records it.
CHECKSUM=b796ba3c974e5133f6ca1a2c4e97c5941ea1a46d202df83344afaa18219f1a62
LEFT_OUT=(benches examples tests Cargo.lock Cargo.toml.orig .cargo_vcs_info.json)
NOT_COMPARED=(PATCHED.md)
VENDORED="vendor/$CRATE"
PATCH="vendor/$CRATE.patch"

if ! command -v patch >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq patch >/dev/null
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The published crate, through cargo: a throwaway project depending on it
# exactly, then `cargo fetch` puts the .crate in cargo's registry cache.
mkdir "$WORK/fetch"
cat >"$WORK/fetch/Cargo.toml" <<EOF
[package]
name = "vendor-check"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$CRATE = { version = "=$VERSION", default-features = false }
EOF
mkdir "$WORK/fetch/src" && : >"$WORK/fetch/src/lib.rs"
(cd "$WORK/fetch" && CARGO_TARGET_DIR="$WORK/target" cargo fetch --quiet)
locked="$(grep -A3 "^name = \"$CRATE\"$" "$WORK/fetch/Cargo.lock" | sed -n 's/^checksum = "\(.*\)"$/\1/p')"
if [ "$locked" != "$CHECKSUM" ]; then
    echo "vendor-check: crates.io's checksum of $CRATE $VERSION is '$locked', expected $CHECKSUM" >&2
    exit 1
fi
archive=
for candidate in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$CRATE-$VERSION.crate"; do
    [ -f "$candidate" ] && [ "$(sha256sum "$candidate" | cut -d' ' -f1)" = "$CHECKSUM" ] && archive="$candidate"
done
if [ -z "$archive" ]; then
    echo "vendor-check: no $CRATE-$VERSION.crate with sha256 $CHECKSUM in cargo's registry cache" >&2
    exit 1
fi

# a/: the published tree minus what the vendored copy leaves out;
# b/: the vendored tree minus what is not compared.
mkdir "$WORK/a" "$WORK/b"
tar -xzf "$archive" -C "$WORK/a" --strip-components=1
for path in "${LEFT_OUT[@]}"; do rm -rf "${WORK:?}/a/$path"; done
cp -a "$VENDORED/." "$WORK/b/"
for path in "${NOT_COMPARED[@]}"; do rm -rf "${WORK:?}/b/$path"; done

if [ "${1:-}" = "--regenerate" ]; then
    # diff exits 1 when the trees differ, as they do; 2 is an error.
    # Timestamps are dropped so the patch changes only with the code.
    (cd "$WORK" && LC_ALL=C diff -ruN a b || [ $? -eq 1 ]) |
        sed -E 's/^((---|\+\+\+) [^\t]*)\t.*$/\1/' >"$PATCH"
    echo "wrote $PATCH ($(grep -c '^+++ ' "$PATCH") files)"
    exit 0
fi

if ! patch --quiet --force --fuzz=0 --no-backup-if-mismatch -p1 -d "$WORK/a" <"$PATCH"; then
    echo "vendor-check: $PATCH does not apply to the published $CRATE $VERSION" >&2
    exit 1
fi
if ! (cd "$WORK" && LC_ALL=C diff -ru a b); then
    echo "vendor-check: $VENDORED is not the published $CRATE $VERSION plus $PATCH (above: published+patch vs vendored)." >&2
    echo "vendor-check: after changing the vendored code on purpose, run .ci/vendor-check.sh --regenerate" >&2
    exit 1
fi
echo "vendor-check: $VENDORED = published $CRATE $VERSION + $PATCH"
