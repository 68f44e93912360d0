#!/usr/bin/env bash
# The daemon under a service manager (issue 13 item 5), without systemd: a
# datagram socket stands in for it through NOTIFY_SOCKET, and WATCHDOG_USEC
# with WATCHDOG_PID ask for watchdog pings. Checked: READY=1 comes once the
# API answers (the receiver asks /healthz the moment READY=1 arrives),
# STATUS= carries the runs in flight, WATCHDOG=1 comes at half the
# interval, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM,
# and no task sees NOTIFY_SOCKET or WATCHDOG_*.
# Usage: systemd_notify.sh PATH/TO/cronkeep
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=$(realpath "$1")
work=$(mktemp -d /tmp/cronkeep-sdnotify-XXXXXX)
daemon_pid=""
receiver_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  [ -n "$receiver_pid" ] && kill "$receiver_pid" 2>/dev/null || true
  [ -n "${SDNOTIFY_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
failures=0
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# The receiver: one line per message (fields joined by '|'), with the
# monotonic time in ms; on READY=1 it asks /healthz at once and notes the
# answer, so "ready before the API listens" cannot pass.
cat > receiver.py <<PY
import socket, sys, time, urllib.request
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("$work/notify.sock")
open("$work/receiver.up", "w").close()
out = open("$work/messages", "a", buffering=1)
while True:
    data = s.recv(65536).decode("utf-8", "replace")
    fields = data.strip("\n").split("\n")
    line = "%d %s" % (time.monotonic() * 1000, "|".join(fields))
    if "READY=1" in fields:
        try:
            code = urllib.request.urlopen("http://127.0.0.1:$port/healthz", timeout=2).status
        except Exception as e:
            code = "error:%s" % e
        line += " healthz=%s" % code
    out.write(line + "\n")
PY
python3 receiver.py &
receiver_pid=$!
wait_for 10 test -e receiver.up

cat > c.toml <<TOML
[daemon]
data_dir = "data"
listen = "127.0.0.1:$port"
shutdown_timeout = "1s"
[tasks.long]
run = 'env > env.txt; while [ ! -e release ]; do sleep 0.05; done'
TOML

# WATCHDOG_PID must be the daemon's own pid: exec keeps the subshell's.
( export NOTIFY_SOCKET="$work/notify.sock" WATCHDOG_USEC=1000000 WATCHDOG_PID=$BASHPID
  exec "$bin" daemon -c c.toml >> daemon.log 2>&1 ) &
daemon_pid=$!

check "READY=1 arrives" wait_for 10 grep -q "READY=1" messages
check "the API answered when READY=1 arrived" grep -q "READY=1.* healthz=200" messages
check "the first STATUS= comes with READY=1" grep -q "READY=1|STATUS=0 run(s) running" messages

"$bin" run long -c c.toml > /dev/null
check "STATUS= carries the run in flight" wait_for 10 grep -q "STATUS=1 run(s) running" messages
check "the task does not see NOTIFY_SOCKET nor WATCHDOG_*" \
  bash -c "test -s data/env.txt && ! grep -Eq '^(NOTIFY_SOCKET|WATCHDOG_USEC|WATCHDOG_PID)=' data/env.txt"
touch data/release
check "STATUS= shows the run ended" wait_for 10 grep -q "STATUS=0 run(s) running, 0 queued" <(tail -n 2 messages)

# Half of a 1 s watchdog: at least 4 pings in 3 s, none more than 700 ms apart.
sleep 3
check "WATCHDOG=1 at half the interval" python3 - messages <<'PY'
import sys
times = [int(l.split()[0]) for l in open(sys.argv[1]) if "WATCHDOG=1" in l]
gaps = [b - a for a, b in zip(times, times[1:])]
ok = len(times) >= 4 and max(gaps) <= 700
print("  %d pings, largest gap %s ms" % (len(times), max(gaps) if gaps else "-"))
sys.exit(0 if ok else 1)
PY

retention_done() { grep -q "last retention: succeeded" <(tail -n 1 messages); }
curl -sf -X POST -H "Authorization: Bearer $(cat data/token)" \
  "http://127.0.0.1:$port/api/tasks/cronkeep:retention/run" > /dev/null
check "STATUS= carries the last retention result" wait_for 10 retention_done

kill -HUP "$daemon_pid"
check "RELOADING=1 on SIGHUP" wait_for 10 grep -q "RELOADING=1|MONOTONIC_USEC=" messages
check "READY=1 after the reload, with its result" wait_for 10 grep -q "READY=1|STATUS=Reloaded" messages
reloading_line=$(grep -n "RELOADING=1" messages | head -1 | cut -d: -f1)
ready_line=$(grep -n "STATUS=Reloaded" messages | head -1 | cut -d: -f1)
check "RELOADING=1 comes before the READY=1 that ends it" test "$reloading_line" -lt "$ready_line"

kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=""
check "STOPPING=1 on SIGTERM" grep -q "STOPPING=1" messages
check "nothing after STOPPING=1 says READY=1" \
  bash -c "! sed -n '/STOPPING=1/,\$p' messages | grep -q READY=1"

# Without NOTIFY_SOCKET nothing is sent, and the daemon runs as before.
: > messages
"$bin" daemon -c c.toml >> daemon.log 2>&1 &
daemon_pid=$!
check "without NOTIFY_SOCKET the daemon starts" wait_for 10 curl -sf "http://127.0.0.1:$port/healthz"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=""
check "without NOTIFY_SOCKET nothing is sent" test ! -s messages

if [ $failures -gt 0 ]; then
  echo "$failures check(s) failed; daemon log:"
  tail -n 30 daemon.log
  exit 1
fi
echo "all checks passed"
