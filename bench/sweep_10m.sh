#!/usr/bin/env bash
# A retention sweep deleting about 1,000,000 of 10,000,000 runs on SQLite
# (issue 14), against one raw DELETE of the same rows on a copy of the same
# database file with the sqlite3 CLI.
#
#   bench/sweep_10m.sh build/cronkeep [RUNS] [REPS]     (defaults 10000000 3)
#
# The history: RUNS runs of 100 tasks (h00..h99), finished evenly over 400
# days up to now, no log files (removing files is purge_bench's subject),
# written with sqlite3 in one transaction into the schema the daemon
# creates (its two runs indexes dropped during the insert and built again
# with the store's own CREATE INDEX statements: far faster than updating
# them row by row). Rules: keep_for = keep_failed_for = 360d, keep_runs and
# the database-wide ceilings out of reach, so the runs older than 360 days
# (10 %) expire by keep_for.
#
# Each repetition, on a fresh copy of that file: a daemon whose 20 tasks
# fire `@every 1s` (`true`) runs the system task cronkeep:retention on
# demand (POST /api/tasks/cronkeep:retention/run?wait=true); reported: the
# sweep's wall time (the run's duration), the daemon's peak RSS (VmHWM,
# before and after the sweep), and the lateness (started_at - scheduled_at)
# of the fires scheduled while it ran, against the fires of the 20 s before
# it. Then the raw side on another fresh copy: `DELETE FROM runs WHERE id <
# N` for exactly the ids the sweep deleted (checked: the same count), timed
# around the sqlite3 process. Medians over REPS.
#
# Needs sqlite3, curl, python3, about 3 x the database's size in $TMPDIR
# (2.3 GB for 10,000,000 runs). The machine is shared and noisy: read the
# ratio, not the absolute times.
set -euo pipefail
. "$(dirname "$0")/sweep_lib.sh"
bin=$(realpath "$1"); runs=${2:-10000000}; reps=${3:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/cronkeep-sweep10m-XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))

config() {  # config DATA_DIR
  cat <<EOF
[daemon]
data_dir = "$1"
listen = "127.0.0.1:$port"
[retention]
schedule = "@yearly"
max_age = "3650d"
max_runs = 1000000000
batch_size = 1000
[compactor]
schedule = "@yearly"
vacuum = "off"
[defaults]
keep_runs = 100000000
keep_for = "360d"
keep_failed_for = "360d"
EOF
  for i in $(seq 0 99); do printf '[tasks.h%02d]\ncron = "0 0 1 1 *"\nrun = "true"\n' "$i"; done
  for i in $(seq 0 19); do printf '[tasks.f%02d]\ncron = "@every 1s"\nrun = "true"\n' "$i"; done
}

start_daemon() {  # start_daemon DATA_DIR
  config "$1" > "$work/c.toml"
  "$bin" daemon -c "$work/c.toml" > "$work/daemon.log" 2>&1 &
  pid=$!
  local t0=$SECONDS
  # Start-up reads the history (the tasks' last outcomes, their last fires):
  # tens of seconds on 10,000,000 runs.
  for _ in $(seq 1 3000); do
    if curl -sf "http://127.0.0.1:$port/healthz" > /dev/null 2>&1; then
      echo "daemon up in $((SECONDS - t0)) s" >&2
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the daemon did not start:" >&2; cat "$work/daemon.log" >&2; exit 1
}
stop_daemon() { kill -TERM "$pid"; wait "$pid" || true; pid=; }

# ---- the history, once ------------------------------------------------------
mkdir -p "$work/gen"
start_daemon "$work/gen"
stop_daemon
db="$work/gen/cronkeep.db"
indexes=$(sqlite3 "$db" "SELECT sql || ';' FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs' AND sql IS NOT NULL")
drops=$(sqlite3 "$db" "SELECT 'DROP INDEX ' || name || ';' FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs' AND sql IS NOT NULL")
now_ms=$(( $(date +%s) * 1000 ))
span_ms=$(( 400 * 86400000 ))
t0=$(date +%s.%N)
sqlite3 "$db" > /dev/null <<EOF
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
DELETE FROM runs;
$drops
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $runs)
INSERT INTO runs (id, task, trigger, status, scheduled_at, created_at, started_at, finished_at, exit_code,
                  duration_ms, log_bytes, node)
SELECT n, 'h' || printf('%02d', n % 100), 'schedule', CASE WHEN n % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
       $now_ms - $span_ms + n * $span_ms / $runs - 40, $now_ms - $span_ms + n * $span_ms / $runs - 40,
       $now_ms - $span_ms + n * $span_ms / $runs - 40, $now_ms - $span_ms + n * $span_ms / $runs,
       CASE WHEN n % 50 = 0 THEN 1 ELSE 0 END, 40, 120, 'local' FROM g;
$indexes
-- Rows written behind the store's back: their counts too (task_stats).
DELETE FROM task_stats; INSERT INTO task_stats (task, runs) SELECT task, COUNT(*) FROM runs GROUP BY task;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
EOF
t1=$(date +%s.%N)
node=$(sqlite3 "$db" "SELECT name FROM nodes LIMIT 1" 2>/dev/null || true)
[ -n "$node" ] && sqlite3 "$db" "UPDATE runs SET node = '$node'"
sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA optimize;" > /dev/null
rm -f "$work/gen/cronkeep.db-wal" "$work/gen/cronkeep.db-shm"
size=$(stat -c %s "$db")
printf 'history: %d runs written in %.1f s (%.2f GB)\n' "$runs" "$(echo "$t1 - $t0" | bc)" "$(echo "$size / 1000000000" | bc -l)"

fresh() {  # fresh DIR: a copy of the generated data directory
  rm -rf "$1"; mkdir -p "$1"
  cp "$db" "$1/cronkeep.db"
  cp "$work/gen/token" "$1/token" 2>/dev/null || true
  sync
}

results="$work/results"
: > "$results"
for rep in $(seq 1 "$reps"); do
  # ---- the sweep, in the daemon -------------------------------------------
  fresh "$work/sweep"
  start_daemon "$work/sweep"
  token=$(cat "$work/sweep/token")
  sleep 20  # the fires of the 20 s before: the baseline
  hwm_before=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  s0=$(date +%s%3N)
  reply=$(curl -sf -X POST -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$port/api/tasks/cronkeep:retention/run?wait=true")
  s1=$(date +%s%3N)
  hwm_after=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  sleep 2
  stop_daemon
  swept="$work/sweep/cronkeep.db"
  deleted=$(( runs - $(sqlite3 "$swept" "SELECT COUNT(*) FROM runs WHERE task LIKE 'h%'") ))
  first_left=$(sqlite3 "$swept" "SELECT MIN(id) FROM runs WHERE task LIKE 'h%'")
  duration=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["duration_ms"])' "$reply")
  message=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["message"])' "$reply")
  lat() {  # lat FROM_MS TO_MS: p50 p99 max n of the fires scheduled in [FROM, TO)
    sqlite3 "$swept" "SELECT started_at - scheduled_at FROM runs WHERE task LIKE 'f%' AND trigger = 'schedule'
                      AND started_at IS NOT NULL AND scheduled_at >= $1 AND scheduled_at < $2 ORDER BY 1" |
      quantiles
  }
  read -r l50 l99 lmax ln <<< "$(lat "$s0" "$s1")"
  read -r b50 b99 bmax bn <<< "$(lat $((s0 - 20000)) "$s0")"
  rm -rf "$work/sweep"

  # ---- the raw DELETE of the same rows on a copy ----------------------------
  fresh "$work/raw"
  r0=$(date +%s%3N)
  sqlite3 "$work/raw/cronkeep.db" "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; DELETE FROM runs WHERE id < $first_left;" > /dev/null
  r1=$(date +%s%3N)
  raw_deleted=$(( runs - $(sqlite3 "$work/raw/cronkeep.db" "SELECT COUNT(*) FROM runs") ))
  rm -rf "$work/raw"
  [ "$raw_deleted" -eq "$deleted" ] || { echo "rep $rep: the raw DELETE removed $raw_deleted runs, the sweep $deleted" >&2; exit 1; }

  printf 'rep %d: sweep deleted %d runs in %d ms (request %d ms) vs raw DELETE %d ms: %.2fx; daemon peak RSS %.1f MB (%.1f MB before the sweep); lateness during the sweep p50 %d ms, p99 %d ms, max %d ms over %d fires (20 s before: p50 %d, p99 %d, max %d over %d)\n  %s\n' \
    "$rep" "$deleted" "$duration" $((s1 - s0)) $((r1 - r0)) "$(echo "$duration / ($r1 - $r0)" | bc -l)" \
    "$(echo "$hwm_after / 1024" | bc -l)" "$(echo "$hwm_before / 1024" | bc -l)" "$l50" "$l99" "$lmax" "$ln" \
    "$b50" "$b99" "$bmax" "$bn" "$message"
  echo "$duration $((r1 - r0)) $hwm_after $l99 $b99" >> "$results"
done
sweep_medians "$results"
