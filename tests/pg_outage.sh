#!/usr/bin/env bash
# The PostgreSQL server goes away under a running node and comes back.
# Run through tests/with_pg.sh (CRONKEEP_TEST_PG_URL, CRONKEEP_TEST_PG_DIR).
# Checks that while the server is down
#   - /healthz answers 503 (degraded) and names the database;
#   - a run in flight keeps running, and its end is recorded once the server
#     is back (not crashed, its exit code kept);
# and once it is back
#   - every fire of an `@every 1s` task in the outage window has exactly one
#     row: run before, missed (with the reason) during, run after: no second
#     of the window without its row;
#   - /healthz is 200 again.
# Usage: pg_outage.sh PATH/TO/cronkeep. Processes are killed by PID.
set -euo pipefail
[ -z "${TRACE:-}" ] || set -x  # TRACE=1: trace, and keep the daemon log in /tmp
bin=$(realpath "$1")
url=${CRONKEEP_TEST_PG_URL:?run through tests/with_pg.sh}
pgdir=${CRONKEEP_TEST_PG_DIR:?run through tests/with_pg.sh}
source "$(dirname "$0")/lib.sh"
pgbin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
as_pg=()
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi
pg_ctl() { (cd "$pgdir" && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" "$@" >/dev/null); }
sql() { psql "$url" -Atqc "$1"; }

work=$(mktemp -d /tmp/cronkeep-outage-XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  # Leave the server running for with_pg.sh to stop.
  [ -f "$pgdir/data/postmaster.pid" ] || pg_ctl -l "$pgdir/server.log" -w start || true
  [ -z "${TRACE:-}" ] || cp "$work/node.log" /tmp/pg_outage.node.log 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
port=$(free_port)
cat > node.toml <<TOML
[daemon]
data_dir = "data"
listen = "127.0.0.1:$port"
node = "solo"
shutdown_timeout = "2s"

[storage]
backend = "postgres"
postgres_url = "$url"

[tasks.tick]
cron = "@every 1s"
run = "echo tick"

[tasks.slow]
run = "sleep 4; echo slow done; exit 3"
TOML
"$bin" daemon -c node.toml > node.log 2>&1 & pid=$!
health_is() { test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = "$1"; }
sql_is() { test "$(sql "$1")" "${3:-=}" "$2"; }  # sql_is QUERY VALUE [OPERATOR]
wait_for 20 health_is 200
wait_for 20 sql_is "SELECT COUNT(*) FROM runs WHERE task = 'tick' AND status = 'succeeded'" 2 -ge
"$bin" run slow -c node.toml > run.out
slow_id=$(grep -o '[0-9]\+' run.out | head -1)
wait_for 10 sql_is "SELECT status FROM runs WHERE id = $slow_id" running
before=$(sql "SELECT MAX(scheduled_at) FROM runs WHERE task = 'tick'")

pg_ctl -m fast -w stop
down_at=$(date +%s%3N)
check "/healthz is 503 while the server is down" wait_for 10 health_is 503
curl -s "http://127.0.0.1:$port/healthz" > health.json || true
check "it names the database" grep -qi "database\|postgres\|connect" health.json
sleep 5  # the slow run ends (exit 3) while the server is away
check "the daemon is still running" kill -0 "$pid"
pg_ctl -l "$pgdir/server.log" -w start
up_at=$(date +%s%3N)
check "/healthz is 200 again once the server is back" wait_for 20 health_is 200
check "the slow run's end is recorded once the server is back" \
  wait_for 20 sql_is "SELECT status || ' ' || exit_code FROM runs WHERE id = $slow_id" "failed 3"
sleep 2
after=$(sql "SELECT MIN(scheduled_at) FROM runs WHERE task = 'tick' AND status = 'succeeded' AND scheduled_at > $up_at")
missed=$(sql "SELECT COUNT(*) FROM runs WHERE task = 'tick' AND status = 'missed' AND scheduled_at > $before")
rows=$(sql "SELECT COUNT(*) FROM runs WHERE task = 'tick' AND scheduled_at > $before AND scheduled_at < ${after:-0}")
twice=$(sql "SELECT COUNT(*) FROM (SELECT scheduled_at FROM runs WHERE task = 'tick' GROUP BY 1 HAVING COUNT(*) > 1) d")
echo "     outage ${down_at}..${up_at} ms; tick fires between the last before ($before) and the first after ($after): $rows rows, $missed missed"
check "fires during the outage are recorded as missed" test "$missed" -ge 3
check "every second between has exactly one row" test "$rows" -eq $(((${after:-0} - before) / 1000 - 1))
check "no fire recorded twice" test "$twice" -eq 0
check "the missed rows say why" test "$(sql "SELECT COUNT(*) FROM runs WHERE task = 'tick' AND status = 'missed'
                                          AND message LIKE 'fire missed: it could not be recorded when due%'")" -eq "$missed"

kill -TERM "$pid"
wait "$pid" || true
pid=
if [ "$failures" -ne 0 ]; then
  echo "pg_outage: $failures check(s) failed"
  echo "--- node.log"; tail -30 node.log
  exit 1
fi
echo "pg_outage: all checks passed"
