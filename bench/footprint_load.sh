#!/usr/bin/env bash
# Footprint after load: the idle daemon of footprint.sh (100 tasks), its anonymous memory;
# then 5 s of wrk on /api/tasks (2 threads, 16 connections); 2 s later its memory, the
# daemon CPU per request and the malloc arenas (reservations of 32 MB or more).
# Usage: bench/footprint_load.sh build/cronkeep   (needs wrk)
set -euo pipefail
bin=$(realpath "$1"); work=$(mktemp -d /tmp/ck-load-XXXXXX); trap 'rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{ echo '[daemon]'; echo 'data_dir = "data"'; echo "listen = \"127.0.0.1:$port\""
  for i in $(seq 1 100); do printf '[tasks.t%03d]\ncron = "%d 3 * * *"\nrun = "echo %d"\n' "$i" $((i % 60)) "$i"; done; } > "$work/c.toml"
(cd "$work" && exec "$bin" daemon -c c.toml >/dev/null 2>&1) & pid=$!
sleep 3
idle=$(awk '/RssAnon/ {print $2}' /proc/$pid/status)
cpu0=$(awk '{print $14+$15}' /proc/$pid/stat)
out=$(wrk -t2 -c16 -d5s "http://127.0.0.1:$port/api/tasks")
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}'); reqs=$(echo "$out" | awk '/requests in/ {print $1}')
cpu1=$(awk '{print $14+$15}' /proc/$pid/stat); cpu_us=$(( (cpu1 - cpu0) * 10000 / reqs ))
sleep 2
anon=$(awk '/RssAnon/ {print $2}' /proc/$pid/status); rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status); hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
arenas=$(python3 -c "
import re
n=0
for l in open('/proc/$pid/maps'):
  a,b=[int(x,16) for x in l.split()[0].split('-')]
  if l.split()[1]=='---p' and len(l.split())==5 and (b-a)>=32<<20: n+=1
print(n)")
kill -TERM $pid; wait $pid || true
echo "anon idle ${idle} kB; after 5 s of /api/tasks (${rps} req/s, ${cpu_us} us of daemon CPU per request): anon ${anon} kB, RSS ${rss} kB (peak ${hwm}); ${arenas} arena reservations"
