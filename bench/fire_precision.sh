#!/usr/bin/env bash
# Fire precision: TASKS tasks (default 20) at `@every 1s` running `true` for
# SECONDS (default 51, i.e. about 1000 fires of 20 tasks), then
# started_at - scheduled_at over every scheduled run: p50, p99, max in ms,
# and the daemon's CPU time over the run (user + system, from
# /proc/PID/stat) as a share of one core.
# Usage: [TMPDIR=DIR] bench/fire_precision.sh build/cronkeep [SECONDS] [TASKS]
# (the data directory is made under TMPDIR, default /tmp: its file system
# matters, docs/benchmarks.md)
set -euo pipefail
bin=$(realpath "$1"); secs=${2:-51}; tasks=${3:-20}
work=$(mktemp -d "${TMPDIR:-/tmp}/cronkeep-fire-XXXXXX"); trap 'rm -rf "$work"' EXIT
# A free port, so that other daemons on this machine do not stop this one.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
  echo '[daemon]'; echo 'data_dir = "data"'; echo "listen = \"127.0.0.1:$port\""
  for i in $(seq 1 "$tasks"); do printf '[tasks.t%04d]\ncron = "@every 1s"\nrun = "true"\n' "$i"; done
} > "$work/c.toml"
"$bin" daemon -c "$work/c.toml" 2>/dev/null & pid=$!
sleep "$secs"
# Fields 14 and 15 of /proc/PID/stat (utime, stime) in clock ticks; the
# command name (field 2) holds no spaces here.
read -r utime stime < <(awk '{print $14, $15}' "/proc/$pid/stat")
kill -TERM $pid; wait $pid || true
sqlite3 "$work/data/cronkeep.db" "SELECT started_at - scheduled_at FROM runs WHERE trigger='schedule' AND started_at IS NOT NULL ORDER BY 1" > "$work/lat"
python3 - "$work/lat" "$tasks" "$secs" "$utime" "$stime" "$(getconf CLK_TCK)" <<'PY'
import sys
v = [int(x) for x in open(sys.argv[1]) if x.strip()]
v.sort()
tasks, secs, ut, st, hz = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
goal = "10" if tasks <= 20 else "50"
cpu = (ut + st) / hz
print(f"fire precision over {len(v)} fires of {tasks} tasks @every 1s: p50 {q(0.5)} ms, p99 {q(0.99)} ms, max {v[-1]} ms "
      f"(goal p99 < {goal} ms); daemon CPU {cpu:.1f} s in {secs:.0f} s ({100 * cpu / secs:.0f}% of a core)")
PY
