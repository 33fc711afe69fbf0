#!/usr/bin/env bash
# Property-based tests of the served spec: schemathesis generates requests
# from /openapi.yaml (valid and invalid ones) against a running `serve --dev`
# and fails on any answer the spec does not allow: a 5xx, an undocumented
# status, header or body, invalid input accepted, valid input refused.
# Needs only python3 (with venv and pip) and the debug binary (built here).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
# Examples per operation and phase; the whole run stays well under 3 minutes.
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
VENV="${SCHEMATHESIS_VENV:-${TMPDIR:-/tmp}/sse-ticket-schemathesis-$SCHEMATHESIS_VERSION}"

# In a venv of its own; where python3 has no venv module (Debian without
# python3-venv), in the user's site-packages instead.
ST=("$VENV/bin/st")
if ! "${ST[@]}" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION"
    rm -rf "$VENV"
    if python3 -m venv "$VENV" 2>/dev/null; then
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    else
        rm -rf "$VENV"
        ST=(python3 -c 'import sys; from schemathesis.cli import schemathesis; sys.argv[0] = "st"; sys.exit(schemathesis())')
        if ! "${ST[@]}" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
            python3 -m pip install --quiet --disable-pip-version-check --user "schemathesis==$SCHEMATHESIS_VERSION" ||
                python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages "schemathesis==$SCHEMATHESIS_VERSION"
        fi
    fi
fi

cargo build --quiet --bin sse-ticket
BIN="${CARGO_TARGET_DIR:-target}/debug/sse-ticket"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

CONFIG="$PWD/.ci/schemathesis.toml"
WORK="$(mktemp -d)"
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --dev with a secret of our own: the banner names the address (port 0 picks
# a free one), and `mint` signs a token with every permission.
SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
export SSE_TICKET_JWT_SECRET="$SECRET"
SSE_TICKET_DATABASE_URL="sqlite://$WORK/sse-ticket.db" SSE_TICKET_LOG_FORMAT=json RUST_LOG=warn \
    "$BIN" serve --dev --bind 127.0.0.1:0 >"$WORK/stdout" 2>"$WORK/stderr" &
SERVER_PID=$!
BASE=
for _ in $(seq 1 100); do
    BASE="$(sed -n 's/.*DEV MODE on \(http:\/\/[0-9.:]*\).*/\1/p' "$WORK/stdout")"
    [ -n "$BASE" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/stderr"; exit 1; }
    sleep 0.1
done
[ -n "$BASE" ] || { echo "serve --dev did not start"; cat "$WORK/stderr"; exit 1; }
TOKEN="$("$BIN" mint --sub schemathesis --subscribe '*' --publish '*' --admin --ttl 1h)"

st() {
    (cd "$WORK" && timeout 150 "${ST[@]}" --config-file "$CONFIG" run "$BASE/openapi.yaml" \
        --header "Authorization: Bearer $TOKEN" \
        --checks all --max-examples "$MAX_EXAMPLES" --workers 2 \
        --generation-database none --no-color "$@")
}
echo "== schemathesis against $BASE"
# POST /admin/revoke last and alone: among the subjects it revokes is, sooner
# or later, the token's own (the fuzzer finds it in the answers), after which
# every authenticated operation would only see 401 token_revoked.
st --exclude-operation-id revokeSubject
st --include-operation-id revokeSubject

STATUS="$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + "/healthz").status)' "$BASE")"
if [ "$STATUS" != 200 ]; then
    echo "GET /healthz answered $STATUS after the run"
    exit 1
fi
echo "== /healthz still 200"
if grep -q '"message":"panic"' "$WORK/stderr"; then
    echo "the server panicked:"
    cat "$WORK/stderr"
    exit 1
fi
