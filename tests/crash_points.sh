#!/usr/bin/env bash
# Fault injection: for each named crash point, a daemon built with
# CRONKEEP_FAULT_INJECTION runs until it reaches the point and kills itself
# (SIGKILL); a clean restart must then leave the invariants of
# tests/invariants.sh holding. Purged runs are archived ([retention] archive
# = true) from the first run on, so every run id is in the history or in the
# archive, whatever point the kill hit; at retention.after_archive_fsync
# (archive synced, rows not yet deleted) the batch's runs must still be in
# the history after the kill, and gone, their entries present, after the
# restart's sweeps.
# Usage: tests/crash_points.sh PATH/TO/cronkeep [POINT…]   (default: every point)
set -euo pipefail
bin=$(realpath "$1"); shift
here=$(cd "$(dirname "$0")" && pwd)
points=(
  scheduler.after_log_created scheduler.after_mark_running scheduler.before_finish_run
  store.before_batch_commit store.before_delete_commit
  retention.after_archive_fsync retention.after_delete_commit retention.after_file_removal
  compactor.between_slices compactor.before_checkpoint
  logs.before_rotate logs.after_rotate_rename logs.before_finalize
)
[ $# -gt 0 ] && points=("$@")
# The run ids that are both archived and still in the history, sorted.
archived_alive() {
  for day in $("$bin" archive list --json -c c.toml | python3 -c 'import json,sys; print(*[f["date"] for f in json.load(sys.stdin)["files"]])'); do
    "$bin" archive show "$day" -c c.toml
  done | python3 -c '
import json, sqlite3, sys
live = {i for (i,) in sqlite3.connect("data/cronkeep.db").execute("SELECT id FROM runs")}
sys.stdout.write("".join(i + "\n" for i in sorted({str(json.loads(l)["run_id"]) for l in sys.stdin} & {str(i) for i in live})))'
}
failures=0
for point in "${points[@]}"; do
  work=$(mktemp -d /tmp/cronkeep-crash-XXXXXX)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  {
    echo '[daemon]'; echo 'data_dir = "data"'; echo "listen = \"127.0.0.1:$port\""; echo 'shutdown_timeout = "2s"'
    echo '[storage]'; echo 'min_free_space = "0"'
    echo '[retention]'; echo 'schedule = "@every 1s"'; echo 'archive = true'; echo 'archive_logs = true'
    echo '[compactor]'; echo 'schedule = "@every 2s"'
    echo '[defaults]'; echo 'keep_runs = KEEP'; echo 'log_max_size = "1KB"'
    for i in $(seq 1 20); do
      printf '[tasks.p%d]\ncron = "@every 1s"\nrun = "echo $$ >> %s/pids; for n in $(seq 1 200); do echo line $n of $CRONKEEP_RUN_ID; done; sleep 0.2"\n' "$i" "$work"
    done
  } > "$work/c.toml"
  (
    cd "$work"
    # First some history, then keep_runs = 1, so retention and the compactor have work.
    sed 's/^keep_runs = KEEP$/keep_runs = 1000/' c.toml > warm.toml
    "$bin" daemon -c warm.toml > warm.log 2>&1 &
    warm=$!
    sleep 4
    kill -TERM $warm; wait $warm
    sed -i 's/^keep_runs = KEEP$/keep_runs = 1/' c.toml
    CRONKEEP_CRASH_AT=$point timeout 30 "$bin" daemon -c c.toml > crash.log 2>&1 || true
    if ! grep -q "crash point reached" crash.log; then echo "FAIL - $point was never reached"; exit 1; fi
    # Runs archived but not deleted when the kill came: archive ∩ history.
    [ "$point" = retention.after_archive_fsync ] && archived_alive > survivors
    "$bin" daemon -c c.toml > clean.log 2>&1 &
    pid=$!
    sleep 2.5
    kill -TERM $pid; wait $pid
    echo "== $point"
    if [ "$point" = retention.after_archive_fsync ]; then
      if [ ! -s survivors ]; then echo "FAIL - no archived run was left in the history by the kill"; exit 1; fi
      echo "ok   - $(wc -l < survivors) run(s) archived before the kill were still in the history after it"
      if [ -n "$(archived_alive | comm -12 - survivors)" ]; then
        echo "FAIL - the restart's sweeps did not delete them"; exit 1
      fi
      echo "ok   - and the restart's sweeps deleted them, their archive entries present"
    fi
    "$here/invariants.sh" "$bin" c.toml data --archived || { echo "     (kept in $work)"; exit 1; }
  ) || { failures=$((failures + 1)); continue; }
  # Tasks left behind by the killed daemon: each wrote its shell's pid, which
  # is also its process group (the runner starts each task in its own).
  [ -f "$work/pids" ] && while read -r p; do kill -9 -- "-$p" 2>/dev/null || true; done < "$work/pids"
  rm -rf "$work"
done
echo "crash points: ${#points[@]} tried, $failures failed"
[ "$failures" -eq 0 ]
