#!/usr/bin/env bash
# Operating a daemon for years (issue 13), driven as a user would: run now
# with extra variables, pause and resume across a restart, configuration
# reload by `cronkeep reload`, SIGHUP and POST /api/reload (all or nothing,
# runs in flight go on, a changed listen refused), each reload recorded.
# Usage: operate.sh PATH/TO/cronkeep
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=$(realpath "$1")
work=$(mktemp -d /tmp/cronkeep-operate-XXXXXX)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  [ -n "${OPERATE_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
failures=0
port=$(free_port)
start_daemon() {
  "$bin" daemon -c c.toml >> daemon.log 2>&1 &
  daemon_pid=$!
  wait_for 10 curl -sf "http://127.0.0.1:$port/healthz"
}
stop_daemon() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || true
  daemon_pid=""
}
write_config() {  # write_config EXTRA_TOML
  cat > c.toml <<TOML
[daemon]
data_dir = "data"
listen = "127.0.0.1:$port"
shutdown_timeout = "5s"
[tasks.hello]
run = 'echo "hello \$WHO"'
[tasks.long]
run = 'while [ ! -e release ]; do sleep 0.05; done; echo released'
$1
TOML
}

write_config ""
start_daemon
token=$(cat data/token)

# Run now with extra variables; names are checked on both paths.
"$bin" run hello --env WHO=world --wait -c c.toml > run.out
id=$("$bin" runs hello --json -c c.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
check "run --env reaches the command" grep -qx "hello world" <("$bin" logs hello "$id" -c c.toml)
check "a bad variable name is refused (exit 2)" bash -c "! '$bin' run hello --env 'A-B=1' -c c.toml 2>err.txt; grep -q 'invalid variable name' err.txt"
code=$(curl -s -o api.out -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
  -d '{"env": {"CRONKEEP_TASK": "x"}}' "http://127.0.0.1:$port/api/tasks/hello/run")
check "the API refuses a reserved name with 400" test "$code" = 400
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"env": {"A": "1"}}' "http://127.0.0.1:$port/api/tasks/hello/run")
check "run with env needs the token" test "$code" = 401

# Reload: a running run goes on, a task is added, one is changed.
"$bin" run long -c c.toml > /dev/null
wait_for 10 bash -c "'$bin' tasks --json -c c.toml | grep -q '\"state\": \"running\"'"
write_config '[tasks.added]
cron = "@every 1s"
run = "true"'
"$bin" reload -c c.toml > reload.out
check "cronkeep reload says what changed" grep -q "added added" reload.out
check "the added task fires" wait_for 10 bash -c "'$bin' runs added --json -c c.toml | grep -q succeeded"
touch data/release  # the command runs in data_dir
check "the run in flight during the reload ended normally" \
  wait_for 10 bash -c "'$bin' runs long --json -c c.toml | grep -q '\"status\": \"succeeded\"'"

# An invalid file: every problem reported, the running configuration kept.
cp c.toml good.toml
printf '[tasks.broken]\ncron = "61 * * * *"\nrun = "true"\nkeep_runz = 1\n' >> c.toml
code=$(curl -s -o bad.json -w '%{http_code}' -X POST -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/reload")
check "POST /api/reload of an invalid file is a 400" test "$code" = 400
check "the 400 names every problem with its line" \
  bash -c "grep -q 'c.toml:[0-9]*:[0-9]*: tasks.broken.cron' bad.json && grep -q 'keep_runz' bad.json"
check "cronkeep reload refuses it too (exit 2)" bash -c "! '$bin' reload -c c.toml 2> bad.err; grep -q 'problem(s); not reloaded' bad.err"
kill -HUP "$daemon_pid"
check "SIGHUP with an invalid file logs the refusal" wait_for 10 grep -q "SIGHUP: reload refused" daemon.log
check "the daemon still runs the old configuration" curl -sf -o /dev/null "http://127.0.0.1:$port/api/tasks/added/runs"

# A changed listen needs a restart.
sed "s/127.0.0.1:$port/127.0.0.1:1/" good.toml > c.toml
code=$(curl -s -o listen.json -w '%{http_code}' -X POST -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/reload")
check "a changed listen is refused with 409" test "$code" = 409
check "the refusal says a restart is needed" grep -q "restart is needed" listen.json

# SIGHUP applies a valid file; the task removed stops firing.
cp good.toml c.toml
sed -i '/\[tasks.added\]/,$d' c.toml
kill -HUP "$daemon_pid"
check "SIGHUP reloads" wait_for 10 grep -q "removed added" daemon.log
n1=$("$bin" runs added --json -n 1000 -c c.toml | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
sleep 2.2
n2=$("$bin" runs added --json -n 1000 -c c.toml | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
check "a removed task stops firing ($n1 then $n2 runs)" test "$n1" = "$n2"
check "every reload is recorded as a run of cronkeep:reload" \
  bash -c "test \$('$bin' runs cronkeep:reload --json -c c.toml | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') -ge 5"

# Pause survives a restart.
"$bin" pause hello -c c.toml > /dev/null
stop_daemon
start_daemon
check "a pause survives a restart" bash -c "'$bin' tasks --json -c c.toml | python3 -c 'import json,sys; t=[x for x in json.load(sys.stdin) if x[\"task\"]==\"hello\"][0]; sys.exit(0 if t[\"state\"]==\"paused\" else 1)'"
stop_daemon
check "reload needs a daemon" bash -c "! '$bin' reload -c c.toml 2> nod.err; grep -q 'needs one' nod.err"

if [ "$failures" -ne 0 ]; then echo "operate: $failures failure(s)"; exit 1; fi
echo "operate: all checks passed"
