#!/usr/bin/env bash
# What an audit row costs a busy /sse-token: the server's CPU time per request
# (all threads, and the SQLite worker threads apart, from /proc/<pid>/stat)
# over an 8 s `sse-ticket-load issue` run, on a copy of a database whose audit
# trail already holds ROWS rows of 65,536 subjects, for each build in
# alternating rounds (BENCHMARKS.md, "The audit trail's write cost").
#   bench/audit-cost.sh [rows] [rounds] [server binaries...]   (default: this build)
# An older commit's binary needs a database migrated by itself: each build
# gets its own, filled the same way (python3's sqlite3).
RUNS_ROWS="${1:-2000000}"
ROUNDS="${2:-2}"
shift 2 || shift $#
. "$(dirname "$0")/common.sh" audit-cost
SERVERS=("$@")
[ ${#SERVERS[@]} -gt 0 ] || SERVERS=("$BIN")
ulimit -n 20000
export SSE_TICKET_JWT_SECRET="$SECRET"
PORT=18402
URL="http://127.0.0.1:$PORT"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; return 0; }

for i in "${!SERVERS[@]}"; do
    "${SERVERS[$i]}" migrate --database-url "sqlite://$WORK/trail-$i.db" >/dev/null
    python3 - "$WORK/trail-$i.db" "$RUNS_ROWS" <<'PYEOF'
import json, os, random, sqlite3, sys
path, rows = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path, isolation_level=None)
epochs = "epoch" in [r[1] for r in db.execute("PRAGMA table_info(audit)")]
start, batch = 1795000000000, 10000
for b in range(rows // batch):
    db.execute("BEGIN")
    out = []
    for n in range(b * batch, (b + 1) * batch):
        sub = f"user-{random.randrange(65536)}"
        row = [start + n, "ticket_issued", None, sub, "127.0.0.1", "sse-ticket-load", json.dumps([f"user/{sub}"]), os.urandom(8).hex(), 1, None]
        if epochs:
            row.append(start + (n >> 16 << 16))
            db.execute("INSERT INTO audit_epochs (epoch) VALUES (?) ON CONFLICT DO NOTHING", (row[-1],))
        out.append(row)
    columns = "at, action, reason, sub, client_ip, user_agent, topics, ticket_fingerprint, count, bucket" + (", epoch" if epochs else "")
    db.executemany(f"INSERT INTO audit ({columns}) VALUES ({', '.join('?' * len(out[0]))})", out)
    db.execute("COMMIT")
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PYEOF
done

ticks() { # pid, thread name prefix ('' for all): utime + stime in clock ticks
    local total=0 task
    for task in /proc/"$1"/task/*; do
        if [ -z "$2" ] || grep -q "^$2" "$task/comm"; then
            total=$((total + $(awk '{print $14 + $15}' "$task/stat")))
        fi
    done
    echo "$total"
}
for round in $(seq 1 "$ROUNDS"); do
    for i in "${!SERVERS[@]}"; do
        cp "$WORK/trail-$i.db" "$WORK/run.db"
        "${SERVERS[$i]}" serve --bind "127.0.0.1:$PORT" --database-url "sqlite://$WORK/run.db" >"$WORK/server.log" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 1 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done
        "$LOAD" --url "$URL" issue --duration 2s --connections 32 >/dev/null 2>&1
        all0=$(ticks "$SERVER_PID" ""); db0=$(ticks "$SERVER_PID" sqlx)
        "$LOAD" --url "$URL" issue --duration 8s --connections 32 2>/dev/null >"$WORK/run.json"
        sleep 0.5 # the writer's last batch
        all1=$(ticks "$SERVER_PID" ""); db1=$(ticks "$SERVER_PID" sqlx)
        kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
        hz=$(getconf CLK_TCK)
        jq -c --arg server "${SERVERS[$i]}" --argjson all $((all1 - all0)) --argjson db $((db1 - db0)) --argjson hz "$hz" \
            '{server: $server, round: '"$round"', ok_rps, cpu_us_per_request: ($all / $hz * 1e6 / (.ok_rps * 8) | round * 1),
              sqlite_us_per_request: ($db / $hz * 1e6 / (.ok_rps * 8) * 10 | round / 10)}' "$WORK/run.json" | tee -a "$OUT/audit-cost.jsonl"
    done
done
