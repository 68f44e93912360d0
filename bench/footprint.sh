#!/usr/bin/env bash
# Footprint: the daemon's resident memory, idle, with 100 configured tasks.
# Usage: bench/footprint.sh build/cronkeep
set -euo pipefail
bin=$(realpath "$1")
work=$(mktemp -d /tmp/cronkeep-rss-XXXXXX); trap 'rm -rf "$work"' EXIT
{
  echo '[daemon]'; echo 'data_dir = "data"'
  # A free port, so that another daemon on 7070 does not fail the measurement.
  echo "listen = \"127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')\""
  for i in $(seq 1 100); do printf '[tasks.t%03d]\ncron = "%d 3 * * *"\nrun = "echo %d"\n' "$i" $((i % 60)) "$i"; done
} > "$work/c.toml"
(cd "$work" && exec "$bin" daemon -c c.toml >/dev/null 2>&1) & pid=$!
sleep 3
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
anon=$(awk '/RssAnon/ {print $2}' /proc/$pid/status)
file=$(awk '/RssFile/ {print $2}' /proc/$pid/status)
pss=$(awk '/^Pss:/ {print $2}' /proc/$pid/smaps_rollup)
threads=$(awk '/Threads/ {print $2}' /proc/$pid/status)
libs=$(awk '/^[0-9a-f]/{name=$6} /^Rss:/{rss[name]+=$2} END{for(n in rss) if (n ~ /\.so/) print rss[n], n}' /proc/$pid/smaps | sort -rn | head -4 | awk '{printf "%s %s kB; ", $2, $1}')
kill -TERM $pid; wait $pid || true
echo "idle daemon with 100 tasks: RSS ${rss} kB (peak ${hwm} kB, PSS ${pss} kB): ${anon} kB anonymous + ${file} kB file-backed; ${threads} threads; goal < 8192 kB"
echo "largest shared libraries resident: ${libs}"
