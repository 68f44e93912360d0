#!/usr/bin/env bash
# Tasks that run as another user (issue 13 item 4), driven as a user would:
# `user = "nobody"` writes `id -un` to its log and the log says nobody,
# while the log file stays the daemon's; an unknown user or group is refused
# by validate and by the daemon with file:line:key, and by a reload (the
# running configuration kept); a daemon that is not root refuses to start
# with a task that sets `user`. Needs root (skipped, 77, otherwise).
# Usage: run_as.sh PATH/TO/cronkeep
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=$(realpath "$1")
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }
work=$(mktemp -d /tmp/cronkeep-runas-XXXXXX)
chmod 755 "$work"
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  [ -n "${RUNAS_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
failures=0
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
write_config() {  # write_config EXTRA_TOML (it starts at line 13)
  cat > c.toml <<TOML
[daemon]
data_dir = "data"
listen = "127.0.0.1:$port"
[tasks.whoami]
run = 'id -un; id -gn; echo "home=\$HOME user=\$USER logname=\$LOGNAME"'
user = "nobody"
[tasks.grouped]
run = 'id -gn'
user = "nobody"
group = "daemon"
[tasks.plain]
run = 'id -un'
$1
TOML
}
first_run() { "$bin" runs "$1" --json -c c.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])'; }

write_config ""
check "validate accepts user and group" bash -c "'$bin' validate -c c.toml > /dev/null"
"$bin" daemon -c c.toml >> daemon.log 2>&1 &
daemon_pid=$!
wait_for 10 curl -sf "http://127.0.0.1:$port/healthz"

"$bin" run whoami --wait -c c.toml > /dev/null
"$bin" logs whoami "$(first_run whoami)" -c c.toml > whoami.log
check "the task with user = nobody wrote nobody to its log" test "$(head -1 whoami.log)" = nobody
check "its primary group is nobody's" test "$(sed -n 2p whoami.log)" = nogroup
check "HOME, USER and LOGNAME are nobody's" grep -qx "home=/nonexistent user=nobody logname=nobody" whoami.log
log=$(ls data/logs/whoami/*.log)
check "the log file stays the daemon's (root)" test "$(stat -c %U "$log")" = root
"$bin" run grouped --wait -c c.toml > /dev/null
check "group = \"daemon\" is the task's primary group" \
  test "$("$bin" logs grouped "$(first_run grouped)" -c c.toml)" = daemon
"$bin" run plain --wait -c c.toml > /dev/null
check "a task without user runs as the daemon" test "$("$bin" logs plain "$(first_run plain)" -c c.toml)" = root

# An unknown user or group: refused by validate, by a reload (kept config),
# and by a daemon's start.
write_config '[tasks.ghost]
run = "true"
user = "no-such-user-ck"
group = "no-such-group-ck"'
check "validate refuses an unknown user with file:line:key" \
  bash -c "! '$bin' validate -c c.toml > v.out 2>&1 && grep -q 'c.toml:15:8: tasks.ghost.user: unknown user \"no-such-user-ck\"' v.out"
check "and an unknown group" grep -q 'c.toml:16:9: tasks.ghost.group: unknown group "no-such-group-ck"' v.out
check "a reload with an unknown user is refused" \
  bash -c "! '$bin' reload -c c.toml > r.out 2>&1 && grep -q 'unknown user' r.out"
check "the running configuration is kept" bash -c "! '$bin' tasks --json -c c.toml | grep -q ghost"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=""
check "the daemon refuses to start with an unknown user" \
  bash -c "! timeout 10 '$bin' daemon -c c.toml > d.out 2>&1 && grep -q 'tasks.ghost.user: unknown user' d.out"

# Not root: refused at start, saying which task and why.
write_config ""
chown -R nobody data
if command -v setpriv > /dev/null; then
  check "a daemon that is not root refuses a task with user" bash -c \
    "! timeout 10 setpriv --reuid=nobody --regid=nogroup --clear-groups '$bin' daemon -c c.toml > nr.out 2>&1"
  check "and says which task and why" grep -q "whoami (user nobody).*needs the daemon to run as root" nr.out
else
  echo "skip - setpriv not found: the not-root check is not run"
fi

if [ $failures -gt 0 ]; then
  echo "$failures check(s) failed; daemon log:"
  tail -n 30 daemon.log
  exit 1
fi
echo "all checks passed"
