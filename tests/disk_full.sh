#!/usr/bin/env bash
# Disk full: a daemon built with CRONKEEP_FAULT_INJECTION sees ENOSPC on
# every log write while a flag file exists. A run writing then ends with a
# clear status and message, log.disk_pressure is raised (counted in
# /metrics), the database stays intact, and once space "returns" (the flag
# is removed) the next run is captured whole. With [retention] archive =
# true, the flag also makes archive writes fail: a purge then deletes
# nothing (no run leaves without its archive entry), fails saying why, and
# goes through once space is back.
# Usage: tests/disk_full.sh PATH/TO/cronkeep
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/cronkeep-full-XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > c.toml <<TOML
[daemon]
data_dir = "data"
listen = "127.0.0.1:$port"
[storage]
min_free_space = "0"
[retention]
archive = true
[tasks.writer]
cron = "@yearly"
run = "for n in \$(seq 1 500); do echo line \$n; done"
TOML
CRONKEEP_ENOSPC_FILE="$work/full" "$bin" daemon -c c.toml > daemon.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "localhost:$port/healthz" >/dev/null && break; sleep 0.1; done
failures=0
check() { local what=$1; shift; if "$@"; then echo "ok   - $what"; else echo "FAIL - $what"; failures=$((failures + 1)); fi; }

touch full
"$bin" run writer --wait --json -c c.toml > full.json || true
check "a run hitting a full disk ends with a clear message" \
  python3 -c 'import json; r=json.load(open("full.json")); print("     ", r["status"], "-", r["message"]); assert "No space left on device" in r["message"] and "disk pressure" in r["message"]'
check "log.disk_pressure was raised" bash -c "curl -s localhost:$port/metrics | grep -q '^cronkeep_log_disk_pressure_total [1-9]'"
rm full
"$bin" run writer --wait --json -c c.toml > ok.json
check "after space returns the next run succeeds" python3 -c 'import json; r=json.load(open("ok.json")); assert r["status"] == "succeeded" and r["message"] == "exit code 0", r'
id=$(python3 -c 'import json; print(json.load(open("ok.json"))["id"])')
check "and its log is complete" test "$("$bin" logs writer "$id" -c c.toml | wc -l)" -eq 500
runs_of_writer() { "$bin" runs writer --json -c c.toml | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
before=$(runs_of_writer)
touch full
set +e
"$bin" purge --older-than 0s --task writer --all --yes -c c.toml > purge.out 2> purge.err
rc=$?
set -e
check "a purge that cannot write its archive fails (exit 1)" test "$rc" -eq 1
check "and says that the runs were kept for want of space" \
  grep -q 'archiving before deleting: .*No space left on device; the [0-9]* run(s) of this batch were not deleted' purge.err
check "no run was deleted" test "$(runs_of_writer)" -eq "$before"
check "no archive file was left behind" test ! -e data/archive
rm full
"$bin" purge --older-than 0s --task writer --all --yes --json -c c.toml > purge.json
check "once space is back the purge archives and deletes them" python3 -c "
import json; p = json.load(open('purge.json')); assert p['runs'] == $before and p['archived'] == $before, p"
check "every purged run is in the archive" test "$("$bin" archive show "$(date -u +%F)" --task writer -c c.toml | wc -l)" -eq "$before"
kill -TERM $pid; wait $pid; pid=""
"$here/invariants.sh" "$bin" c.toml data --archived || failures=$((failures + 1))
[ "$failures" -eq 0 ] && echo "disk full: every check passed"
exit "$failures"
