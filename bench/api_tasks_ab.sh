#!/usr/bin/env bash
# GET /api/tasks on RUNS runs / 100 tasks (one task holding 60 %): binary A vs binary B,
# each a daemon on its own copy of one history (written with sqlite3 into the
# schema A creates; B migrates its copy at its first start, timed), curl
# requests interleaved, medians. Compares two builds, e.g. a commit and its parent:
#   bench/api_tasks_ab.sh BEFORE_BIN AFTER_BIN [RUNS=1000000] [REPS=11]
# BEFORE_BIN must predate the kept counts (schema version 7): rows written
# behind a later one would not be counted.
set -euo pipefail
before=$(realpath "$1"); after=$(realpath "$2"); runs=${3:-1000000}; reps=${4:-11}
work=$(mktemp -d /tmp/cronkeep-api-tasks-XXXXXX)
mkdir -p "$work/before" "$work/after"
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM $p 2>/dev/null; done; sleep 1; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
conf() {  # dir port
  { printf '[daemon]\ndata_dir = "data"\nlisten = "127.0.0.1:%s"\n' "$2"
    printf '[retention]\nschedule = "@yearly"\n[compactor]\nschedule = "@yearly"\n'
    for i in $(seq 0 99); do printf '[tasks.t%02d]\ncron = "0 0 1 1 *"\nrun = "true"\n' "$i"; done
  } > "$1/c.toml"
}
up() {  # dir bin port
  (cd "$1" && exec "$2" daemon -c c.toml > daemon.log 2>&1) & pids+=($!)
  for _ in $(seq 600); do curl -fs "http://127.0.0.1:$3/healthz" >/dev/null 2>&1 && return; sleep 0.05; done
  echo "no daemon in $1"; cat "$1/daemon.log"; exit 1
}
pb=$(port); pa=$(port)
conf "$work/before" $pb; conf "$work/after" $pa
up "$work/before" "$before" $pb   # the base schema (version 7)
kill -TERM ${pids[0]}; wait ${pids[0]} || true; pids=()
db="$work/before/data/cronkeep.db"
t=$(date +%s.%N)
sqlite3 "$db" > /dev/null <<SQL
PRAGMA busy_timeout = 10000;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $runs)
INSERT INTO runs (task, trigger, status, scheduled_at, created_at, started_at, finished_at, exit_code, duration_ms)
SELECT CASE WHEN n % 10 < 6 THEN 't00' ELSE 't' || printf('%02d', 1 + n % 99) END, 'schedule',
       CASE WHEN n % 17 = 0 THEN 'failed' ELSE 'succeeded' END,
       1700000000000 + n * 1000, 1700000000000 + n * 1000, 1700000000000 + n * 1000,
       1700000000000 + n * 1000 + 40, CASE WHEN n % 17 = 0 THEN 1 ELSE 0 END, 40 FROM g;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
echo "history: $runs runs in $(echo "$(date +%s.%N) - $t" | bc) s"
mkdir -p "$work/after/data"; cp "$db" "$work/after/data/cronkeep.db"
t=$(date +%s.%N)
up "$work/after" "$after" $pa   # migrates: counts every task once
echo "after's first start (migration included): $(echo "$(date +%s.%N) - $t" | bc) s"
up "$work/before" "$before" $pb
sqlite3 "$work/after/data/cronkeep.db" "SELECT COUNT(*), SUM(runs) FROM task_stats"
# The same answer from both (modulo timing fields): tasks and counts.
curl -fs "http://127.0.0.1:$pb/api/tasks" | python3 -c 'import json,sys; d=json.load(sys.stdin); t=d["tasks"] if isinstance(d,dict) else d; print("before:", len(t), "tasks", sum(x.get("runs",0) for x in t), "runs")'
curl -fs "http://127.0.0.1:$pa/api/tasks" | python3 -c 'import json,sys; d=json.load(sys.stdin); t=d["tasks"] if isinstance(d,dict) else d; print("after :", len(t), "tasks", sum(x.get("runs",0) for x in t), "runs")'
for i in 1 2; do curl -fs -o /dev/null "http://127.0.0.1:$pb/api/tasks"; curl -fs -o /dev/null "http://127.0.0.1:$pa/api/tasks"; done  # warm
b=(); a=()
for i in $(seq $reps); do
  if (( i % 2 )); then
    b+=($(curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$pb/api/tasks"))
    a+=($(curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$pa/api/tasks"))
  else
    a+=($(curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$pa/api/tasks"))
    b+=($(curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$pb/api/tasks"))
  fi
done
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "median %.1f ms, min %.1f ms, max %.1f ms (n=%d)", v[int((NR+1)/2)]*1000, v[1]*1000, v[NR]*1000, NR}'; }
echo "GET /api/tasks before: $(med "${b[@]}")"
echo "GET /api/tasks after : $(med "${a[@]}")"
echo "load: $(cat /proc/loadavg)"
