#!/usr/bin/env bash
# The CLI prints the same thing with a daemon (ops over the HTTP API) and
# without one (ops on the data directory): every command with --json, and
# every refused input with the same message and exit code. Ids, times and
# sizes that legitimately move between the two runs are masked.
# Usage: parity.sh PATH/TO/cronkeep
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=$(realpath "$1")
work=$(mktemp -d /tmp/cronkeep-parity-XXXXXX)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  [ -n "${PARITY_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
failures=0
start_daemon() {
  "$bin" daemon -c p.toml >> daemon.log 2>&1 &
  daemon_pid=$!
  wait_for 10 curl -sf "http://127.0.0.1:$port/healthz"
}
stop_daemon() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || true
  daemon_pid=""
}

port=$(free_port)
cat > p.toml <<TOML
[daemon]
data_dir = "data"
listen = "127.0.0.1:$port"
[retention]
schedule = "@yearly"
archive = true
archive_logs = true
[compactor]
schedule = "@yearly"
[tasks.ok]
cron = "@yearly"
run = "echo one; echo two >&2; echo three"
[tasks.bad]
cron = "@yearly"
run = "echo broken; exit 3"
[tasks.manual]
run = "echo on demand"
[tasks.off]
cron = "@yearly"
run = "echo off"
enabled = false
TOML

# Masks what may differ between two runs of the same command: ids, times,
# durations and sizes of things the other run may have changed.
cat > mask.py <<'PY'
import json, re, sys
MOVING = {"id", "run_id", "created_at", "started_at", "finished_at", "scheduled_at", "next_fire", "next_run",
          "cutoff", "last_success", "last_failure", "time", "duration_ms", "cpu_ms", "max_rss_kb", "log_path",
          "bytes", "page_count", "free_pages", "wal_bytes", "log_dir_bytes", "next_fires", "db_bytes_reclaimed",
          "bytes_before", "bytes_after", "bytes_reclaimed", "pages_freed", "retry_of", "next_before", "db_bytes",
          "free_bytes"}
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z|\d{8}_\d{6}_\d+|\b\d+(\.\d+)? ?[KMG]?B\b|#?\b\d+\b")
def mask(v, key=None):
    if key in MOVING and not isinstance(v, list) or key in ("next_fires",):
        return "<" + key + ">"
    if isinstance(v, dict):
        return {k: mask(x, k) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return [mask(x) for x in v]
    if isinstance(v, str):
        return STAMP.sub("<n>", v)
    return v
text = sys.stdin.read()
try:
    docs = [json.loads(text)]
except ValueError:
    docs = [json.loads(l) for l in text.splitlines() if l.strip()]
print(json.dumps([mask(d) for d in docs], indent=1, sort_keys=True))
PY

# capture NAME ARGS...: stdout (masked JSON), stderr (masked) and exit code.
capture() {
  local name=$1; shift
  set +e
  "$bin" "$@" -c p.toml > "out.raw" 2> "err.raw"
  local rc=$?
  set -e
  { echo "exit $rc"; python3 -c 'import re,sys; print(re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z|\b\d+\b", "<n>", sys.stdin.read()), end="")' < err.raw
    if [ -s out.raw ]; then python3 mask.py < out.raw 2>/dev/null || cat out.raw; fi; } > "$mode.$name"
}
compare() {
  local name=$1
  if diff -u "daemon.$name" "local.$name" > "diff.$name"; then
    echo "ok   - $name: the same with and without a daemon"
  else
    echo "FAIL - $name differs with and without a daemon:"; cat "diff.$name"; failures=$((failures + 1))
  fi
}

start_daemon
for i in 1 2 3; do "$bin" run ok --wait -c p.toml > /dev/null; done
"$bin" run bad --wait -c p.toml > /dev/null || true
first=$("$bin" runs ok --json -c p.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
failed=$("$bin" runs bad --json -c p.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

reads() {
  capture tasks tasks --json
  capture runs runs ok --json
  capture runs_failed runs bad --status failed --json
  capture runs_page runs ok --limit 1 --before 99999 --json
  capture logs logs ok "$first" --json
  capture logs_tail logs ok "$first" --tail 1 --json
  capture logs_range logs ok "$first" --from-line 2 --lines 1 --json
  capture logs_follow logs ok "$first" -f --json
  capture logs_plain logs ok "$first"
  capture status status --json
  capture check check --json
  capture dry_run purge --older-than 0s --dry-run --json
  capture validate validate --json
  capture notifications notifications --json
  capture history_empty status --history 5 --json
  # Refused input: the same words and exit code on both paths.
  capture bad_task runs nosuch
  capture bad_name runs 'a..b'
  capture bad_status runs ok --status great
  capture bad_run logs ok 999999
  capture other_task logs bad "$first"
  capture tail_and_from logs ok "$first" --tail 1 --from-line 2
  capture bad_older purge --older-than soon
  capture purge_unknown purge --older-than 1d --task nosuch --dry-run
  capture purge_running purge --older-than 1d --status running --dry-run
  capture cancel_ended cancel ok "$first"
  capture cancel_unknown cancel ok 999999
  capture delete_unknown delete ok 999999
  capture pause_system pause cronkeep:retention
  capture pause_unknown pause nosuch
  capture run_env_bad run ok --env 1BAD=x
  capture history_bad status --history 5000
  # Pause and resume leave the data as they found it.
  capture pause pause ok --json
  capture pause_again pause ok
  capture tasks_paused tasks --json
  capture resume resume ok --json
  capture resume_again resume ok
}

mode=daemon reads
stop_daemon
mode=local reads

# Actions change the data: each path acts once on equal data.
act() {
  capture delete delete bad "$failed" --json
  capture purge purge --older-than 0s --task ok --limit 1 --all --yes --json
  capture compact compact --json
  capture repair check --repair --json
  # The two system runs just recorded (a purge, a compaction), newest first.
  capture history status --history 2 --json
}
"$bin" run ok --wait -c p.toml > /dev/null 2>&1 || true  # refused without a daemon (not compared: run needs one)
mode=local act
start_daemon
"$bin" run bad --wait -c p.toml > /dev/null || true
failed=$("$bin" runs bad --json -c p.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
mode=daemon act
# The archive both paths' deletes and purges wrote, read the same way by each.
today=$(date -u +%F)
archive_reads() {
  capture archive_list archive list --json
  capture archive_show archive show "$today" --json
  capture archive_lines archive show "$today" --task ok
  capture archive_run archive show "$today" --run 999999
  capture archive_bad_date archive show 2026-02-30
  capture archive_bad_form archive show ../etc
  capture archive_none archive show 1999-01-01
  capture archive_bad_task archive show "$today" --task 'a..b'
}
mode=daemon archive_reads
stop_daemon
mode=local archive_reads

for name in tasks runs runs_failed runs_page logs logs_tail logs_range logs_follow logs_plain status check dry_run \
            validate bad_task bad_name bad_status bad_run other_task tail_and_from bad_older purge_unknown \
            purge_running cancel_ended cancel_unknown delete_unknown delete purge compact repair \
            notifications pause_system pause_unknown run_env_bad pause pause_again tasks_paused resume resume_again \
            archive_list archive_show archive_lines archive_run archive_bad_date archive_bad_form archive_none \
            archive_bad_task history_empty history_bad history; do
  compare "$name"
done
# And the comparison is not vacuous: the captures hold what they should.
grep -q '"task": "ok"' daemon.tasks || { echo "FAIL - tasks capture is empty"; failures=$((failures + 1)); }
grep -q 'exit 2' daemon.tail_and_from || { echo "FAIL - --tail with --from-line was not refused"; failures=$((failures + 1)); }
grep -q 'known tasks' daemon.purge_unknown || { echo "FAIL - unknown purge task not named"; failures=$((failures + 1)); }
grep -q '"state": "paused"' daemon.tasks_paused || { echo "FAIL - a paused task is not shown paused"; failures=$((failures + 1)); }
grep -q '"state": "manual"' daemon.tasks || { echo "FAIL - an on-demand task is not shown manual"; failures=$((failures + 1)); }
grep -q '"state": "disabled"' daemon.tasks || { echo "FAIL - a disabled task is not shown disabled"; failures=$((failures + 1)); }
grep -q '"reason": "manual"' daemon.archive_show || { echo "FAIL - the archive holds no purged run"; failures=$((failures + 1)); }
grep -q 'exit 2' daemon.archive_bad_date || { echo "FAIL - an impossible date was not refused"; failures=$((failures + 1)); }
grep -q '"three"' daemon.logs_follow || { echo "FAIL - follow printed no lines"; failures=$((failures + 1)); }
grep -q '"task": "cronkeep:compactor"' daemon.history && grep -q '"task": "cronkeep:retention"' daemon.history ||
  { echo "FAIL - the history lacks the purge or the compaction"; failures=$((failures + 1)); }
grep -q 'limit: expected an integer from' daemon.history_bad || { echo "FAIL - --history 5000 was not refused"; failures=$((failures + 1)); }

if [ "$failures" -ne 0 ]; then echo "parity: $failures difference(s)"; exit 1; fi
echo "parity: every command printed the same with and without a daemon"
