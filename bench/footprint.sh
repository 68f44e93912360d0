#!/usr/bin/env bash
# Footprint: the daemon's resident memory, idle, with 100 configured tasks.
# Usage: bench/footprint.sh build/cronkeep
set -euo pipefail
bin=$(realpath "$1")
work=$(mktemp -d /tmp/cronkeep-rss-XXXXXX); trap 'rm -rf "$work"' EXIT
{
  echo '[daemon]'; echo 'data_dir = "data"'
  for i in $(seq 1 100); do printf '[tasks.t%03d]\ncron = "%d 3 * * *"\nrun = "echo %d"\n' "$i" $((i % 60)) "$i"; done
} > "$work/c.toml"
"$bin" daemon -c "$work/c.toml" 2>/dev/null & pid=$!
sleep 3
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid || true
echo "idle daemon with 100 tasks: RSS ${rss} kB (peak ${hwm} kB); goal < 8192 kB"
