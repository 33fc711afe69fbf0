#!/usr/bin/env bash
# Installs Python's authlib (the OAuth client library that tests/api/oauth_library.rs
# drives the token exchange with) in a venv of its own, and prints the path of
# a Python that imports it. Where python3 has no venv module (Debian without
# python3-venv), installs into the user's site-packages and prints python3.
set -euo pipefail

PACKAGES=(authlib==1.9.10 requests==2.34.2)
VENV="${AUTHLIB_VENV:-${TMPDIR:-/tmp}/sse-ticket-authlib-1.9.10}"
CHECK='import authlib, requests; assert authlib.__version__ == "1.9.10"'

if "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
    echo "$VENV/bin/python"
    exit 0
fi
rm -rf "$VENV"
if python3 -m venv "$VENV" 2>/dev/null; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2
    echo "$VENV/bin/python"
    exit 0
fi
rm -rf "$VENV"
if ! python3 -c "$CHECK" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --user "${PACKAGES[@]}" >&2 ||
        python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages "${PACKAGES[@]}" >&2
fi
command -v python3
