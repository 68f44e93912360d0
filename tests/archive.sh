#!/usr/bin/env bash
# Archive before delete (issue 13), driven as a user would: a daemon with
# [retention] archive = true and keep_runs = 1 runs tasks every second and
# sweeps every second; `cronkeep archive list` and `cronkeep archive show`
# (through the daemon, over the API, and without a daemon) show the runs it
# purged, each with its log (a large one cut to its first and last MiB), none
# of them still in the history; `cronkeep delete` archives too; and the data
# directory's invariants hold afterwards.
# Usage: archive.sh PATH/TO/cronkeep
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "$1")
work=$(mktemp -d /tmp/cronkeep-archive-XXXXXX)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  [ -n "${ARCHIVE_KEEP:-}" ] || rm -rf "$work"
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
[retention]
schedule = "@every 1s"
archive = true
archive_logs = true
archive_keep_for = "30d"
[defaults]
keep_runs = 1
[tasks.tick]
cron = "@every 1s"
run = 'echo "tick \$CRONKEEP_RUN_ID"'
[tasks.big]
run = 'head -c 3000000 /dev/zero | tr "\\\\0" x; echo; echo "the end of \$CRONKEEP_RUN_ID"'
[tasks.keep]
run = 'echo kept'
TOML
ck() { "$bin" "$@" -c c.toml; }

"$bin" daemon -c c.toml > daemon.log 2>&1 &
daemon_pid=$!
wait_for 10 curl -sf "http://127.0.0.1:$port/healthz"
today=$(date -u +%F)
# Two runs of big: keep_runs = 1 purges the first, with its 3 MB log.
first_big=$(ck run big --wait --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
ck run big --wait > /dev/null
kept=$(ck run keep --wait --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
archived_count() { ck archive list --json | python3 -c 'import json,sys; f=json.load(sys.stdin)["files"]; print(sum(x["entries"] for x in f))'; }
has_big() { ck archive show "$today" --run "$first_big" > /dev/null 2>&1; }
check "the sweeps archive purged runs" wait_for 20 bash -c "[ \$('$bin' archive list --json -c c.toml | python3 -c 'import json,sys; print(sum(x[\"entries\"] for x in json.load(sys.stdin)[\"files\"]))') -ge 6 ]"
check "the first run of big is archived once purged" wait_for 10 has_big

ck archive list > list.txt
check "archive list shows today's file with its entries" grep -Eq "^$today +[0-9]+ +[0-9.]+ [KMG]?B" list.txt
ck archive show "$today" > show.jsonl
check "archive show prints one JSON object per line" python3 -c '
import json, sys
lines = open("show.jsonl").read().splitlines()
assert lines, "no entries"
for l in lines:
    e = json.loads(l)
    assert e["v"] == 1 and e["run"]["id"] == e["run_id"] and e["reason"] in ("keep_runs", "manual"), e
print("     ", len(lines), "entries")'
ck runs tick --json --limit 1000 > tick_runs.json
check "no archived run is still in the history, and each has its log" python3 -c '
import json
entries = [json.loads(l) for l in open("show.jsonl")]
live = {r["id"] for r in json.load(open("tick_runs.json"))}
ticks = [e for e in entries if e["task"] == "tick"]
assert len(ticks) >= 2, len(ticks)
for e in ticks:
    assert e["run_id"] not in live, e["run_id"]
    assert e["log"]["text"] == "tick %d\n" % e["run_id"], e["log"]
print("     ", len(ticks), "tick runs archived,", len(live), "in the history")'
ck archive show "$today" --run "$first_big" > big.jsonl
check "a 3 MB log is archived as its first and last MiB around a marker" python3 -c '
import json
e = json.loads(open("big.jsonl").read())
log = e["log"]
assert log["bytes"] > 3000000 and log["omitted"] == log["bytes"] - 2 * 1048576, log["bytes"]
assert "[cronkeep archive: %d bytes omitted]" % log["omitted"] in log["text"]
assert log["text"].startswith("xxxx") and log["text"].endswith("the end of %d\n" % e["run_id"])'
check "archive show --task shows that task's runs only" bash -c \
  "'$bin' archive show '$today' --task tick -c c.toml | python3 -c 'import json,sys; assert all(json.loads(l)[\"task\"] == \"tick\" for l in sys.stdin)'"
check "cronkeep delete archives the run it deletes" bash -c \
  "'$bin' delete keep $kept -c c.toml > /dev/null && '$bin' archive show '$today' --run $kept -c c.toml | grep -q '\"reason\":\"manual\"'"
set +e
ck archive show 2026-02-31 > /dev/null 2> bad.err; bad=$?
ck archive show "$today" --run 999999999 > /dev/null 2> none.err; none=$?
set -e
check "an impossible date is refused (exit 2)" test "$bad" -eq 2
check "and says why" grep -q 'date: expected a day as YYYY-MM-DD' bad.err
check "a run not in the archive exits 1 and says so" bash -c "[ $none -eq 1 ] && grep -q 'matches --run 999999999' none.err"
check "GET /api/archive lists the day" bash -c \
  "curl -sf http://127.0.0.1:$port/api/archive | grep -q '\"date\":\"$today\"'"
check "GET /api/archive/{date} pages through it" bash -c \
  "curl -sf 'http://127.0.0.1:$port/api/archive/$today?limit=2' | python3 -c 'import json,sys; p=json.load(sys.stdin); assert len(p[\"entries\"]) == 2 and p[\"next\"], p[\"next\"]'"
check "GET /api/archive/{date} refuses an impossible date with a 400" bash -c \
  "[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/api/archive/2026-02-31) = 400 ]"
check "the retention runs say what they archived" bash -c \
  "'$bin' runs cronkeep:retention --limit 50 -c c.toml | grep -q 'archived [0-9]* run(s) to archive/$today.jsonl.zst'"
if command -v zstdcat > /dev/null; then
  check "zstdcat reads the file (the header is a skippable frame)" bash -c \
    "zstdcat data/archive/$today.jsonl.zst | head -1 | python3 -c 'import json,sys; assert json.loads(sys.stdin.readline())[\"v\"] == 1'"
fi

kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""
after=$(archived_count)
check "without a daemon, archive list and show read the same files" bash -c \
  "[ $after -ge 6 ] && [ \$('$bin' archive show '$today' -c c.toml | wc -l) -eq $after ]"
"$here/invariants.sh" "$bin" c.toml data --archived || failures=$((failures + 1))
[ "$failures" -eq 0 ] && echo "archive: every check passed"
exit "$failures"
