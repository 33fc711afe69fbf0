#!/usr/bin/env bash
# The operator's files of docs/fleet/: the alert rules are valid
# (`promtool check rules`) and pass their unit tests (`promtool test rules`),
# and every PromQL expression of the Grafana dashboard parses (checked by
# promtool as a recording rule, with the dashboard's variables filled in).
# Installs promtool from Debian's prometheus package if it is missing (the
# machine image's policy-rc.d keeps apt from starting the server).
# That every metric they name exists is tests/api/fleet.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -n 1

promtool check rules docs/fleet/alerts.yml
promtool test rules docs/fleet/alerts.test.yml

exprs="$(mktemp -d)"
trap 'rm -rf "$exprs"' EXIT
python3 - docs/fleet/grafana-dashboard.json >"$exprs/dashboard.rules.yml" <<'PY'
import json, sys

def exprs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from exprs(item)

with open(sys.argv[1]) as f:
    dashboard = json.load(f)
found = list(exprs(dashboard.get("panels", [])))
if not found:
    sys.exit("no expressions in the dashboard")
print("groups:\n  - name: dashboard\n    rules:")
for i, expr in enumerate(found):
    for var, value in (("$__rate_interval", "1m"), ("$job", ".*"), ("$instance", ".*")):
        expr = expr.replace(var, value)
    print(f"      - record: dashboard:expr{i}\n        expr: {json.dumps(expr)}")
PY
echo "dashboard expressions:"
promtool check rules "$exprs/dashboard.rules.yml"
