#!/usr/bin/env bash
# bench/sweep_10m.sh on PostgreSQL: a retention sweep deleting about 10 % of
# RUNS runs (default 10,000,000), against one raw DELETE of the same rows on
# a copy of the same database.
#
#   tests/with_pg.sh bench/pg_sweep.sh build/cronkeep [RUNS] [REPS]     (defaults 10000000 3)
#
# The history: RUNS runs of 100 tasks (h00..h99), finished evenly over 400
# days up to now, no log files, written with generate_series into the schema
# the daemon creates, then VACUUM ANALYZE. Rules as in sweep_10m.sh:
# keep_for = keep_failed_for = 360d, so the runs older than 360 days expire.
#
# Each repetition works on a fresh copy (CREATE DATABASE … TEMPLATE): a
# daemon whose 20 tasks fire `@every 1s` (`true`) runs cronkeep:retention on
# demand (POST /api/tasks/cronkeep:retention/run?wait=true); reported: the
# sweep's wall time (the run's duration), the daemon's peak RSS (VmHWM), and
# the lateness (started_at - scheduled_at) of the fires scheduled while it
# ran, against the fires of the 20 s before it. Then, on another fresh copy,
# `DELETE FROM runs WHERE id < N` for exactly the ids the sweep deleted
# (checked: the same count), timed around psql. Medians over REPS.
set -euo pipefail
. "$(dirname "$0")/sweep_lib.sh"
bin=$(realpath "$1"); runs=${2:-10000000}; reps=${3:-3}
url=${CRONKEEP_TEST_PG_URL:?run through tests/with_pg.sh}
work=$(mktemp -d "${TMPDIR:-/tmp}/cronkeep-pgsweep-XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url_of() { echo "${url/\/cronkeep_test\?//$1?}"; }  # the same server, database $1
export PGOPTIONS="--client-min-messages=warning"
sql() { psql "$url" -Atq -v ON_ERROR_STOP=1 -c "$1"; }

config() {  # config DATABASE
  printf '[daemon]\ndata_dir = "data"\nlisten = "127.0.0.1:%s"\n' "$port"
  printf '[storage]\nbackend = "postgres"\npostgres_url = "%s"\n' "$(url_of "$1")"
  printf '[retention]\nschedule = "@yearly"\nmax_age = "3650d"\nmax_runs = 1000000000\nbatch_size = 1000\n'
  printf '[compactor]\nschedule = "@yearly"\n'
  printf '[defaults]\nkeep_runs = 100000000\nkeep_for = "360d"\nkeep_failed_for = "360d"\n'
  for i in $(seq 0 99); do printf '[tasks.h%02d]\ncron = "0 0 1 1 *"\nrun = "true"\n' "$i"; done
  for i in $(seq 0 19); do printf '[tasks.f%02d]\ncron = "@every 1s"\nrun = "true"\n' "$i"; done
}
start_daemon() {  # start_daemon DATABASE
  config "$1" > c.toml
  "$bin" daemon -c c.toml > daemon.log 2>&1 &
  pid=$!
  for _ in $(seq 1 3000); do
    curl -sf "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the daemon did not start:" >&2; cat daemon.log >&2; exit 1
}
stop_daemon() { kill -TERM "$pid"; wait "$pid" || true; pid=; }
fresh() {  # fresh NAME: a copy of the generated database
  sql "DROP DATABASE IF EXISTS $1"
  sql "CREATE DATABASE $1 TEMPLATE cronkeep_test"
}

# ---- the history, once, in cronkeep_test ------------------------------------
start_daemon cronkeep_test  # creates the schema
stop_daemon
now_ms=$(( $(date +%s) * 1000 ))
span_ms=$(( 400 * 86400000 ))
t0=$(date +%s)
psql "$url" -q -v ON_ERROR_STOP=1 <<SQL
DELETE FROM runs;  -- the fires of the generating daemon's short life
INSERT INTO runs (id, task, trigger, status, scheduled_at, created_at, started_at, finished_at, exit_code,
                  duration_ms, log_path, log_bytes, node)
SELECT n, 'h' || lpad((n % 100)::text, 2, '0'), 'schedule', CASE WHEN n % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
       $now_ms - $span_ms + n * $span_ms / $runs - 40, $now_ms - $span_ms + n * $span_ms / $runs - 40,
       $now_ms - $span_ms + n * $span_ms / $runs - 40, $now_ms - $span_ms + n * $span_ms / $runs,
       CASE WHEN n % 50 = 0 THEN 1 ELSE 0 END, 40, '', 120, (SELECT name FROM nodes LIMIT 1)
FROM generate_series(1::bigint, $runs::bigint) n;
SELECT setval(pg_get_serial_sequence('runs', 'id'), $runs);
-- Rows written behind the store's back: their counts too (task_stats).
DELETE FROM task_stats; INSERT INTO task_stats (task, runs) SELECT task, COUNT(*) FROM runs GROUP BY task;
VACUUM ANALYZE runs;
SQL
echo "history: $runs runs written in $(( $(date +%s) - t0 )) s ($(sql "SELECT pg_size_pretty(pg_database_size('cronkeep_test'))"))"
sql "CHECKPOINT"

results="$work/results"
: > "$results"
lat() {  # lat DATABASE FROM_MS TO_MS: p50 p99 max n of the fires scheduled in [FROM, TO)
  psql "$(url_of "$1")" -Atq -c "SELECT started_at - scheduled_at FROM runs WHERE task LIKE 'f%' AND trigger = 'schedule'
                                  AND started_at IS NOT NULL AND scheduled_at >= $2 AND scheduled_at < $3 ORDER BY 1" |
    quantiles
}
for rep in $(seq 1 "$reps"); do
  # ---- the sweep, in the daemon ---------------------------------------------
  fresh sweep_copy
  rm -rf data
  start_daemon sweep_copy
  token=$(cat data/token)
  sleep 20  # the fires of the 20 s before: the baseline
  s0=$(date +%s%3N)
  reply=$(curl -sf -X POST -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$port/api/tasks/cronkeep:retention/run?wait=true")
  s1=$(date +%s%3N)
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  sleep 2
  stop_daemon
  swept=$(url_of sweep_copy)
  deleted=$(( runs - $(psql "$swept" -Atqc "SELECT COUNT(*) FROM runs WHERE task LIKE 'h%'") ))
  first_left=$(psql "$swept" -Atqc "SELECT MIN(id) FROM runs WHERE task LIKE 'h%'")
  duration=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["duration_ms"])' "$reply")
  message=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["message"])' "$reply")
  read -r l50 l99 lmax ln <<< "$(lat sweep_copy "$s0" "$s1")"
  read -r b50 b99 bmax bn <<< "$(lat sweep_copy $((s0 - 20000)) "$s0")"
  sql "DROP DATABASE sweep_copy"

  # ---- the raw DELETE of the same rows on a copy ------------------------------
  fresh raw_copy
  sql "CHECKPOINT"
  r0=$(date +%s%3N)
  psql "$(url_of raw_copy)" -Atq -c "DELETE FROM runs WHERE id < $first_left" > /dev/null
  r1=$(date +%s%3N)
  raw_deleted=$(( runs - $(psql "$(url_of raw_copy)" -Atqc "SELECT COUNT(*) FROM runs") ))
  sql "DROP DATABASE raw_copy"
  [ "$raw_deleted" -eq "$deleted" ] || { echo "rep $rep: the raw DELETE removed $raw_deleted runs, the sweep $deleted" >&2; exit 1; }

  printf 'rep %d: sweep deleted %d runs in %d ms vs raw DELETE %d ms: %.2fx; daemon peak RSS %.1f MB; lateness during the sweep p50 %d ms, p99 %d ms, max %d ms over %d fires (20 s before: p50 %d, p99 %d, max %d over %d)\n  %s\n' \
    "$rep" "$deleted" "$duration" $((r1 - r0)) "$(echo "$duration / ($r1 - $r0)" | bc -l)" "$(echo "$hwm / 1024" | bc -l)" \
    "$l50" "$l99" "$lmax" "$ln" "$b50" "$b99" "$bmax" "$bn" "$message"
  echo "$duration $((r1 - r0)) $hwm $l99 $b99" >> "$results"
done
sweep_medians "$results"
