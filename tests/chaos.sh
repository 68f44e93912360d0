#!/usr/bin/env bash
# Chaos: a daemon with 30 tasks firing every second, keep_runs = 2 and
# retention every second is killed with SIGKILL at random moments and
# restarted, ROUNDS times; after a final clean start and stop the data
# directory must hold: no run pending or running, every row's log file exists
# and every .log file has its row (one to one), integrity_check ok, and
# `cronkeep check` exits 0.
#
# Usage: tests/chaos.sh PATH/TO/cronkeep [--rounds N] [--seed S]   (CI: 25 rounds)
set -euo pipefail
bin=$(realpath "$1"); shift
rounds=25; seed=$$
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
RANDOM=$seed
work=$(mktemp -d /tmp/cronkeep-chaos-XXXXXX)
pid=""
# Tasks left behind by killed daemons: each wrote its shell's pid, which is
# also its process group (the runner starts each task in its own); only those
# are killed, by pid.
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  [ -f "$work/pids" ] && while read -r p; do kill -9 -- "-$p" 2>/dev/null || true; done < "$work/pids"
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
  echo '[daemon]'; echo 'data_dir = "data"'; echo "listen = \"127.0.0.1:$port\""; echo 'shutdown_timeout = "2s"'
  echo '[storage]'; echo 'min_free_space = "0"'
  echo '[retention]'; echo 'schedule = "@every 1s"'
  echo '[compactor]'; echo 'schedule = "@every 3s"'
  echo '[defaults]'; echo 'keep_runs = 2'; echo 'log_max_size = "2KB"'
  for i in $(seq 1 30); do
    case $((i % 3)) in
      0) cmd="echo chaos-marker-$$ \$CRONKEEP_RUN_ID" ;;
      1) cmd="for n in 1 2 3 4 5 6 7 8 9 10; do echo line \$n of run \$CRONKEEP_RUN_ID chaos-marker-$$; done; sleep 0.3" ;;
      2) cmd="head -c 5000 /dev/zero | tr '\\\\0' x; echo; sleep 0.1; exit \$((CRONKEEP_RUN_ID % 2))" ;;
    esac
    printf '[tasks.c%02d]\ncron = "@every 1s"\nrun = "echo $$ >> %s/pids; %s"\n' "$i" "$work" "$cmd"
  done
} > "$work/c.toml"
here=$(cd "$(dirname "$0")" && pwd)
cd "$work"
"$bin" validate -c c.toml > /dev/null

for round in $(seq 1 "$rounds"); do
  "$bin" daemon -c c.toml >> daemon.log 2>&1 &
  pid=$!
  sleep "$((RANDOM % 2)).$((RANDOM % 10))$((RANDOM % 10))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done

# A final clean start and stop reconciles whatever the last kill left.
"$bin" daemon -c c.toml >> daemon.log 2>&1 &
pid=$!
sleep 3
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
failures=0
if [ "$rc" -eq 0 ]; then echo "ok   - the daemon stopped cleanly (exit 0)"; else echo "FAIL - the daemon exited $rc"; failures=1; fi
"$here/invariants.sh" "$bin" c.toml data || failures=$((failures + 1))
runs=$(sqlite3 data/cronkeep.db "SELECT COUNT(*) FROM runs")
crashed=$(sqlite3 data/cronkeep.db "SELECT COUNT(*) FROM runs WHERE status = 'crashed'")
echo "chaos: $rounds round(s) of kill -9 (seed $seed); $runs run(s) in the history, $crashed crashed"
if [ "$failures" -ne 0 ]; then echo "chaos: $failures invariant(s) broken"; exit 1; fi
echo "chaos: every invariant holds"
