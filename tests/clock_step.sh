#!/usr/bin/env bash
# Steps of the wall clock under a real daemon (issue 10, item 5): the daemon
# runs under libfaketime, whose offset is read from a file at every clock
# call, so the test steps the daemon's wall clock (and only the daemon's)
# 2 h back and then 2 h forward again, while the monotonic clock goes on.
# Required (docs/scheduling.md, "Steps of the wall clock"):
#   - after the step back, an `@every 1s` task goes on firing within seconds,
#     with scheduled times on the new (earlier) clock: no 2 h stall;
#   - after the step forward, it goes on firing on the restored clock; of
#     the 2 h passed over only the newest fire runs, the others are recorded
#     missed (at most max_catch_up_runs rows and a summary), not 7,200 runs;
#   - the daemon's log names both steps.
# Usage: clock_step.sh PATH/TO/cronkeep
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=$(realpath "$1")
libfaketime=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
[ -r "$libfaketime" ] || { echo "clock_step.sh: $libfaketime is missing (scripts/setup.sh installs faketime)"; exit 1; }
work=$(mktemp -d /tmp/cronkeep-clock-XXXXXX)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  [ -n "${CLOCK_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
failures=0
port=$(free_port)
cat > c.toml <<TOML
[daemon]
data_dir = "data"
listen = "127.0.0.1:$port"
shutdown_timeout = "2s"
[storage]
min_free_space = "0"
[tasks.tick]
cron = "@every 1s"
run = 'true'
catch_up = "latest"
TOML
echo "+0" > offset
LD_PRELOAD=$libfaketime FAKETIME_TIMESTAMP_FILE="$work/offset" FAKETIME_NO_CACHE=1 \
  FAKETIME_DONT_FAKE_MONOTONIC=1 "$bin" daemon -c c.toml > daemon.log 2>&1 &
daemon_pid=$!
wait_for 10 curl -sf "http://127.0.0.1:$port/healthz"

# scheduled_near T: a scheduled run (not `missed`) was scheduled within 10 s
# after wall time T.
scheduled_near() {
  "$bin" runs tick --json -n 50 -c c.toml | python3 -c '
import json, sys, datetime
t = int(sys.argv[1])
def secs(r): return datetime.datetime.fromisoformat(r["scheduled_at"].replace("Z", "+00:00")).timestamp()
sys.exit(0 if any(r["trigger"] == "schedule" and r["status"] != "missed" and t <= secs(r) <= t + 10
                  for r in json.load(sys.stdin)) else 1)' "$1"
}
# count STATUS: runs of tick with this status ("ran" = any other status).
count() {
  "$bin" runs tick --json -n 1000 -c c.toml | python3 -c '
import json, sys
runs = json.load(sys.stdin)
print(sum(1 for r in runs if (r["status"] == "missed") == (sys.argv[1] == "missed")))' "$1"
}

check "the task fires on the real clock" wait_for 10 scheduled_near "$(date +%s)"

# 2 h back: the daemon's clock reads two hours earlier from now on.
echo "-2h" > offset
back=$(($(date +%s) - 7200))
check "after a 2 h step back the task fires within seconds, on the new clock" wait_for 8 scheduled_near "$back"
check "the daemon logged the step back" wait_for 5 grep -q "wall clock stepped back by" daemon.log

# 2 h forward again: the fires passed over follow the rule of a late loop
# (catch_up = "latest"): the newest runs, the older ones are recorded missed,
# max_catch_up_runs (100) rows at most plus one summary row; not 7,200 runs.
ran_before=$(count ran)
missed_before=$(count missed)
echo "+0" > offset
now=$(date +%s)
check "after a 2 h step forward the task fires on the restored clock" wait_for 8 scheduled_near "$now"
check "the daemon logged the step forward" wait_for 5 grep -q "wall clock stepped forward by" daemon.log
sleep 2
ran=$(($(count ran) - ran_before))
missed=$(($(count missed) - missed_before))
check "the step forward ran only the newest fire(s) ($ran runs in ~4 s)" test "$ran" -le 8
check "the fires passed over are recorded missed, bounded ($missed rows)" test "$missed" -ge 1 -a "$missed" -le 101

kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=""
if [ "$failures" -ne 0 ]; then
  echo "--- daemon log"; tail -30 daemon.log
  exit 1
fi
echo "clock_step.sh: all passed"
