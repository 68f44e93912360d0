#!/usr/bin/env bash
# A notification storm against a sink that never answers: two daemons side by
# side in the same run, each with 100 tasks failing every second; one sends
# every failure to a webhook whose receiver accepts connections and never
# answers, the other has no notifications. Reports each daemon's scheduler
# lateness (started_at - scheduled_at: p50/p99/max), its RSS sampled every
# 10 s (first, max, last), and for the notifying one the delivery attempts
# recorded, the first attempts per task and 60 s window (goal: one message
# per task and window) and the notices dropped by the full queue.
# Usage: bench/notify_storm.sh build/cronkeep [SECONDS=600]
set -euo pipefail
bin=$(realpath "$1"); secs=${2:-600}
work=$(mktemp -d /tmp/cronkeep-storm-XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cd "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The receiver: accepts every connection and never reads nor answers.
sink_port=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024)
held = []
while True:
    c, _ = s.accept(); held.append(c)
' "$sink_port" & pids+=($!)

write_config() {  # NAME PORT NOTIFY(0|1)
  {
    printf '[daemon]\ndata_dir = "data-%s"\nlisten = "127.0.0.1:%s"\n' "$1" "$2"
    if [ "$3" = 1 ]; then
      printf '[defaults]\nnotify = ["hook"]\n[notify.hook]\nwebhook = "http://127.0.0.1:%s/hook"\nevents = ["failed"]\n' "$sink_port"
    fi
    for i in $(seq 1 100); do printf '[tasks.t%03d]\ncron = "@every 1s"\nrun = "exit 1"\n' "$i"; done
  } > "$1.toml"
}
write_config quiet "$(free_port)" 0
write_config storm "$(free_port)" 1
"$bin" daemon -c quiet.toml > quiet.log 2>&1 & pids+=($!); quiet_pid=$!
"$bin" daemon -c storm.toml > storm.log 2>&1 & pids+=($!); storm_pid=$!
sleep 3
from=$(date +%s%3N)
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
: > quiet.rss; : > storm.rss
end=$((SECONDS + secs))
while [ $SECONDS -lt $end ]; do
  rss "$quiet_pid" >> quiet.rss; rss "$storm_pid" >> storm.rss
  sleep 10
done
to=$(date +%s%3N)
rss "$quiet_pid" >> quiet.rss; rss "$storm_pid" >> storm.rss
kill -TERM "$quiet_pid" "$storm_pid"; wait "$quiet_pid" "$storm_pid" || true

lat() {
  sqlite3 "data-$1/cronkeep.db" "SELECT started_at - scheduled_at FROM runs WHERE trigger = 'schedule'
    AND started_at IS NOT NULL AND scheduled_at BETWEEN $from AND $to ORDER BY 1" |
    python3 -c 'import sys; v=sorted(int(x) for x in sys.stdin if x.strip()); q=lambda p: v[min(len(v)-1,int(p*len(v)))]; print(f"{len(v)} fires: p50 {q(.5)} ms, p99 {q(.99)} ms, max {v[-1]} ms")'
}
mem() { python3 -c 'import sys; v=[int(x) for x in open(sys.argv[1]) if x.strip()]; print(f"RSS first {v[0]//1024} MiB, max {max(v)//1024} MiB, last {v[-1]//1024} MiB ({len(v)} samples)")' "$1"; }
db=data-storm/cronkeep.db
echo "notification storm: 100 tasks failing every second, ${secs} s, a webhook that never answers"
echo "  without notifications: $(lat quiet); $(mem quiet.rss)"
echo "  with the dead sink   : $(lat storm); $(mem storm.rss)"
echo "  deliveries recorded: $(sqlite3 $db "SELECT status || ' ' || COUNT(*) FROM notifications GROUP BY status" | tr '\n' ',' )"
echo "  first attempts per task and 60 s window: $(sqlite3 $db "SELECT COALESCE(MAX(n), 0) FROM (SELECT task, created_at / 60000, COUNT(*) AS n
  FROM notifications WHERE attempt = 1 AND status <> 'dropped' GROUP BY 1, 2)") at most (by design 1, plus 1 coalesced at the window's end)"
echo "  notices dropped by a full queue: $(sqlite3 $db "SELECT COUNT(*) FROM notifications WHERE status = 'dropped'") (one delivery thread: against a receiver that never answers it makes one attempt per timeout, 10 s; the rest wait coalesced)"
