#!/usr/bin/env bash
# Load isolation: wrk hammers GET PATH (default /api/tasks) on a daemon while
# 20 tasks fire every second; the scheduler's lateness (started_at -
# scheduled_at) during the load against the same daemon's lateness without
# load, in the same run.
# Usage: [TMPDIR=DIR] bench/load_isolation.sh build/cronkeep [SECONDS=20] [PATH=/api/tasks]
# (the data directory is made under TMPDIR, /tmp by default)
set -euo pipefail
bin=$(realpath "$1"); secs=${2:-20}; path=${3:-/api/tasks}
command -v wrk >/dev/null || { echo "wrk is not installed (scripts/setup.sh installs it)"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/cronkeep-load-XXXXXX")
pid=""
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
  echo '[daemon]'; echo 'data_dir = "data"'; echo "listen = \"127.0.0.1:$port\""
  for i in $(seq 1 20); do printf '[tasks.t%02d]\ncron = "@every 1s"\nrun = "true"\n' "$i"; done
} > "$work/c.toml"
"$bin" daemon -c "$work/c.toml" 2>/dev/null & pid=$!
sleep 2
quiet_from=$(date +%s%3N); sleep "$secs"; quiet_to=$(date +%s%3N)
load_from=$(date +%s%3N)
wrk -t2 -c32 -d"${secs}s" --latency "http://127.0.0.1:$port$path" > "$work/wrk.txt"
load_to=$(date +%s%3N)
kill -TERM $pid; wait $pid || true; pid=""
lat() {
  sqlite3 "$work/data/cronkeep.db" "SELECT started_at - scheduled_at FROM runs WHERE trigger='schedule' AND started_at IS NOT NULL AND scheduled_at BETWEEN $1 AND $2 ORDER BY 1" |
    python3 -c 'import sys; v=sorted(int(x) for x in sys.stdin if x.strip()); q=lambda p: v[min(len(v)-1,int(p*len(v)))]; print(f"{len(v)} fires: p50 {q(.5)} ms, p99 {q(.99)} ms, max {v[-1]} ms")'
}
echo "scheduler lateness, 20 tasks @every 1s, ${secs}s each phase"
echo "  without load           : $(lat "$quiet_from" "$quiet_to")"
echo "  under wrk on $path: $(lat "$load_from" "$load_to") (goal p99 < 10 ms)"
echo "  wrk: $(grep 'Requests/sec' "$work/wrk.txt" | tr -s ' '), latency $(grep -A4 'Latency Distribution' "$work/wrk.txt" | grep -E ' 50%| 99%' | tr -s ' ' | tr '\n' ' ')"
