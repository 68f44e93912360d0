#!/usr/bin/env bash
# Fire precision: 20 tasks at `@every 1s` for SECONDS (default 51, i.e. about
# 1000 fires), then started_at - scheduled_at over every scheduled run:
# p50, p99, max in ms. Usage: bench/fire_precision.sh build/cronkeep [SECONDS]
set -euo pipefail
bin=$(realpath "$1"); secs=${2:-51}
work=$(mktemp -d /tmp/cronkeep-fire-XXXXXX); trap 'rm -rf "$work"' EXIT
{
  echo '[daemon]'; echo 'data_dir = "data"'
  for i in $(seq 1 20); do printf '[tasks.t%02d]\ncron = "@every 1s"\nrun = "true"\n' "$i"; done
} > "$work/c.toml"
"$bin" daemon -c "$work/c.toml" 2>/dev/null & pid=$!
sleep "$secs"; kill -TERM $pid; wait $pid || true
sqlite3 "$work/data/cronkeep.db" "SELECT started_at - scheduled_at FROM runs WHERE trigger='schedule' AND started_at IS NOT NULL ORDER BY 1" > "$work/lat"
python3 - "$work/lat" <<'PY'
import sys
v = [int(x) for x in open(sys.argv[1]) if x.strip()]
v.sort()
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(f"fire precision over {len(v)} fires of 20 tasks @every 1s: p50 {q(0.5)} ms, p99 {q(0.99)} ms, max {v[-1]} ms (goal p99 < 10 ms)")
PY
