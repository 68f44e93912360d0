#!/usr/bin/env bash
# A reload of a 1,000-task configuration: a daemon with 1,000 tasks (hourly,
# so they do not fire during the run) and 20 tasks firing every second. The
# file is rewritten with every hourly task's command changed and
# POST /api/reload called, REPS times in a row; reports the reload's wall
# time as the API client sees it (median, max) and the 20 tasks' scheduler
# lateness (started_at - scheduled_at) during the reloads against a quiet
# phase of the same length, in the same run.
# Usage: bench/reload.sh build/cronkeep [REPS=30]
set -euo pipefail
bin=$(realpath "$1"); reps=${2:-30}
work=$(mktemp -d /tmp/cronkeep-reload-XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
write_config() {  # VERSION
  {
    printf '[daemon]\ndata_dir = "data"\nlisten = "127.0.0.1:%s"\n' "$port"
    for i in $(seq 1 20); do printf '[tasks.tick%02d]\ncron = "@every 1s"\nrun = "true"\n' "$i"; done
    for i in $(seq 1 1000); do
      printf '[tasks.job%04d]\ncron = "%d * * * *"\nrun = "echo job %d version %s"\nkeep_runs = %d\n' \
        "$i" $((i % 60)) "$i" "$1" $((10 + i % 50))
    done
  } > c.toml.new
  mv c.toml.new c.toml
}
write_config 0
"$bin" daemon -c c.toml > daemon.log 2>&1 & pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
token=$(cat data/token)
sleep 2
quiet_from=$(date +%s%3N)
sleep 10
quiet_to=$(date +%s%3N)
load_from=$(date +%s%3N)
: > times
for r in $(seq 1 "$reps"); do
  write_config "$r"
  curl -fsS -o /dev/null -w '%{time_total}\n' -X POST -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$port/api/reload" >> times
  sleep 0.3
done
load_to=$(date +%s%3N)
changed=$(curl -fsS -X POST -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/reload" |
  python3 -c 'import json,sys; j=json.load(sys.stdin); print(len(j["changed"]), "changed,", len(j["added"]), "added")')
kill -TERM $pid; wait $pid || true; pid=""
lat() {
  sqlite3 data/cronkeep.db "SELECT started_at - scheduled_at FROM runs WHERE trigger = 'schedule'
    AND started_at IS NOT NULL AND scheduled_at BETWEEN $1 AND $2 ORDER BY 1" |
    python3 -c 'import sys; v=sorted(int(x) for x in sys.stdin if x.strip()); q=lambda p: v[min(len(v)-1,int(p*len(v)))]; print(f"{len(v)} fires: p50 {q(.5)} ms, p99 {q(.99)} ms, max {v[-1]} ms")'
}
echo "reload of a 1,020-task configuration (1,000 changed each time), $reps reloads"
python3 -c 'import sys, statistics; v=sorted(float(x)*1000 for x in open(sys.argv[1])); print(f"  reload as the API client sees it: median {statistics.median(v):.0f} ms, max {v[-1]:.0f} ms")' times
echo "  a last reload with nothing changed reported: $changed"
echo "  lateness of 20 tasks @every 1s, quiet      : $(lat "$quiet_from" "$quiet_to")"
echo "  lateness of 20 tasks @every 1s, reloading  : $(lat "$load_from" "$load_to")"
