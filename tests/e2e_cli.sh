#!/usr/bin/env bash
# End-to-end: drives the real binary as a user would. Usage: e2e_cli.sh PATH/TO/cronkeep
set -euo pipefail
bin=$(realpath "$1")
work=$(mktemp -d /tmp/cronkeep-e2e-XXXXXX)
daemon_pid=""
hook_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  [ -n "$hook_pid" ] && kill "$hook_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
failures=0
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then echo "ok   - $what"; else echo "FAIL - $what"; failures=$((failures + 1)); fi
}
wait_for() {  # wait_for SECONDS COMMAND...: polls until the command succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# 1. A bad configuration: every problem on its own line with file:line:column, exit 2.
cat > bad.toml <<'TOML'
[daemon]
timezone = "Mars/Olympus"

[defaults]
keep_runz = 5

[tasks.ok]
cron = "*/5 * * * *"
run = "true"

[tasks.broken]
cron = "0 0 30 2 *"
run = "true"
timeout = "soon"
TOML
set +e
"$bin" validate -c bad.toml > bad.out 2> bad.err
rc=$?
set -e
check "invalid config exits 2" test "$rc" -eq 2
check "unknown zone reported at 2:" grep -q '^bad.toml:2:[0-9]*: .*Mars/Olympus' bad.err
check "unknown key reported at 5:" grep -q '^bad.toml:5:[0-9]*: .*keep_runz' bad.err
check "never-firing cron reported at 12:" grep -q '^bad.toml:12:[0-9]*: .*cron' bad.err
check "bad duration reported at 14:" grep -q '^bad.toml:14:[0-9]*: .*soon' bad.err
check "daemon refuses the same file" bash -c "! '$bin' daemon -c bad.toml 2>/dev/null"
check "nothing was created by a refused start" test ! -e cronkeep-data

# 2. A good configuration validates and shows the next three fires.
cat > good.toml <<'TOML'
[daemon]
data_dir = "data"
shutdown_timeout = "2s"
listen = "127.0.0.1:PORT"

[tasks.tick]
cron = "@every 1s"
run = "echo tick $CRONKEEP_RUN_ID; echo warn >&2"

[tasks.sleepy]
cron = "@yearly"
run = "echo sleeping; sleep 60"
TOML
sed -i "s/PORT/$(free_port)/" good.toml
"$bin" validate -c good.toml > good.out
check "validate lists the next three fires" test "$(grep -c 'next:' good.out)" -eq 6

# 3. The daemon fires, records and captures; SIGTERM stops it cleanly.
# Started with the soft limit on open files that systemd gives (1,024).
(ulimit -Sn 1024; exec "$bin" daemon -c good.toml > daemon.log 2>&1) &
daemon_pid=$!
check "runs get recorded" wait_for 30 bash -c "'$bin' runs tick -c good.toml --json | grep -q '\"status\": \"succeeded\"'"
check "the daemon raises its soft limit on open files to the hard one (at most 65,536)" \
  test "$(awk '/Max open files/ {print $4}' "/proc/$daemon_pid/limits")" -eq "$(ulimit -Hn | awk '{print ($1 == "unlimited" || $1 > 65536) ? 65536 : $1}')"
kill -TERM "$daemon_pid"
set +e
wait "$daemon_pid"
rc=$?
set -e
daemon_pid=""
check "SIGTERM ends the daemon with exit 0" test "$rc" -eq 0
check "a data directory with the database exists" test -f data/cronkeep.db
run_id=$("$bin" runs tick -c good.toml --json | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["status"]=="succeeded"]; print(r[0]["id"])')
check "logs prints what the run wrote" bash -c "'$bin' logs tick $run_id -c good.toml | diff - <(printf 'tick $run_id\nwarn\n')"
check "the log file sits at logs/{task}/{stamp}_{id}.log" bash -c "ls data/logs/tick/ | grep -Eq '^[0-9]{8}_[0-9]{6}_${run_id}\.log$'"
check "tasks --json lists both tasks, then the system tasks" bash -c "'$bin' tasks -c good.toml --json | python3 -c 'import json,sys; t=json.load(sys.stdin); assert [x[\"task\"] for x in t]==[\"tick\",\"sleepy\",\"cronkeep:retention\",\"cronkeep:compactor\"]; assert t[0][\"runs\"]>0; assert t[2][\"next_fire\"]'"
check "runs of an unknown task is an error" bash -c "! '$bin' runs nosuch -c good.toml 2>/dev/null"
check "logs of a run of another task is an error" bash -c "! '$bin' logs sleepy $run_id -c good.toml 2>/dev/null"

# 4. kill -9 during a run: at the next start the run becomes crashed (-2), its log stays.
cat > crash.toml <<'TOML'
[daemon]
data_dir = "data2"
listen = "127.0.0.1:PORT"
[tasks.long]
cron = "* * * * * *"
run = "echo partial; sleep 60"
TOML
sed -i "s/PORT/$(free_port)/" crash.toml
"$bin" daemon -c crash.toml > crash.log 2>&1 &
daemon_pid=$!
check "a long run starts" wait_for 30 bash -c "'$bin' runs long -c crash.toml --json | grep -q '\"status\": \"running\"'"
kill -9 "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
daemon_pid=""
# The run's shell and its sleep are orphans now; they hold no descriptor of
# the dead daemon (every descriptor but 0-2 is closed in a child), so the new
# daemon can bind the same port while they live on. This one logs JSON lines.
"$bin" daemon -c crash.toml --log-format json > crash2.log 2>&1 &
daemon_pid=$!
check "the killed run is crashed with exit code -2" wait_for 30 bash -c "'$bin' runs long -c crash.toml --json --status crashed | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r and r[-1][\"exit_code\"]==-2'"
crashed=$("$bin" runs long -c crash.toml --json --status crashed | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
check "its partial log is kept" bash -c "'$bin' logs long $crashed -c crash.toml | grep -q partial"
check "a second daemon on the same data directory is refused" bash -c "! '$bin' daemon -c crash.toml 2>/dev/null"
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true
daemon_pid=""
check "--log-format json: every line of the daemon's log is {time, level, message}" python3 -c '
import json, sys
lines = open("crash2.log").read().splitlines()
assert len(lines) >= 3, lines
for l in lines:
    o = json.loads(l)
    assert set(o) == {"time", "level", "message"}, o
    assert o["time"].endswith("Z") and o["level"] in ("info", "warning", "error"), o
assert any("stopped" in json.loads(l)["message"] for l in lines), lines'
check "--log-format refuses an unknown format" bash -c "! '$bin' daemon -c crash.toml --log-format xml 2>/dev/null"

# 5. Maintenance from the command line, with and without a daemon.
cat > maint.toml <<'TOML'
[daemon]
data_dir = "data3"
listen = "127.0.0.1:PORT"
[retention]
schedule = "@yearly"
[tasks.quick]
cron = "@yearly"
run = "echo quick"
TOML
sed -i "s/PORT/$(free_port)/" maint.toml
check "run without a daemon is refused" bash -c "! '$bin' run quick -c maint.toml 2>/dev/null"
"$bin" daemon -c maint.toml > maint.log 2>&1 &
daemon_pid=$!
check "the daemon's API answers" wait_for 30 bash -c "'$bin' status -c maint.toml >/dev/null"
check "run --wait goes through the daemon and succeeds" bash -c "'$bin' run quick --wait -c maint.toml | grep -q succeeded"
for i in 1 2 3; do "$bin" run quick --wait -c maint.toml > /dev/null; done
check "purge --dry-run through the daemon deletes nothing" bash -c "'$bin' purge --older-than 0s --dry-run -c maint.toml | grep -q 'would purge 3 run'"
check "a bad --older-than is refused with exit 2" bash -c "'$bin' purge --older-than soon -c maint.toml 2>&1; test \$? -eq 2"
check "an unknown --status is refused" bash -c "'$bin' purge --older-than 1d --status great -c maint.toml 2>&1 | grep -q 'unknown status'"
check "a negative --limit is refused" bash -c "! '$bin' purge --older-than 1d --limit -5 -c maint.toml 2>/dev/null"
check "nothing was deleted by the refused purges" test "$("$bin" runs quick -c maint.toml --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -eq 4
check "purge keeps the newest success" bash -c "'$bin' purge --older-than 0s --task quick -c maint.toml | grep -q 'purged 3 run'"
check "purge --all through the daemon deletes runs and their logs" bash -c "'$bin' purge --older-than 0s --task quick --all -c maint.toml | grep -q 'purged 1 run'"
check "the purged logs are gone" test -z "$(ls data3/logs/quick 2>/dev/null)"
check "status shows the manual purge" bash -c "'$bin' status -c maint.toml | grep -q 'Manual purge'"
check "compact through the daemon" bash -c "'$bin' compact -c maint.toml | grep -q Reclaimed"
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true
daemon_pid=""
check "check finds a clean data directory" "$bin" check -c maint.toml
echo junk > data3/logs/orphan.log
mkdir -p data3/logs/quick && echo junk > data3/logs/quick/20260101_000000_999.log
check "check reports an orphan log with exit 1" bash -c "'$bin' check -c maint.toml | grep -q orphan_log && ! '$bin' check -c maint.toml >/dev/null"
check "check --repair removes it" bash -c "'$bin' check --repair -c maint.toml && '$bin' check -c maint.toml"

# 6. `logs` prints the captured bytes exactly (a 200,000-byte line is not
#    split), and on a terminal shows control bytes instead of sending them.
cat > bytes.toml <<'TOML'
[daemon]
data_dir = "data4"
listen = "127.0.0.1:PORT"
[tasks.long]
cron = "@yearly"
run = "head -c 200000 /dev/zero | tr '\\0' x; echo; printf 'esc \\033[31mred\\033[0m nul \\000 end\\n'"
[tasks.many]
cron = "@yearly"
run = "seq 1 100000"
TOML
sed -i "s/PORT/$(free_port)/" bytes.toml
"$bin" daemon -c bytes.toml > bytes.log 2>&1 &
daemon_pid=$!
wait_for 30 bash -c "'$bin' status -c bytes.toml" || true
long_id=$("$bin" run long --wait --json -c bytes.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
many_id=$("$bin" run many --wait --json -c bytes.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
check "logs is byte-identical to the captured log (cmp)" bash -c "'$bin' logs long $long_id -c bytes.toml | cmp - data4/logs/long/*_$long_id.log"
check "the long line is one line of 200,000 bytes" test "$("$bin" logs long "$long_id" -c bytes.toml | head -1 | wc -c)" -eq 200001
check "on a terminal, ESC and NUL are shown escaped, not sent" bash -c "script -qec \"'$bin' logs long $long_id -c bytes.toml --from-line 4\" /dev/null | grep -aq 'esc \\\\x1b\\[31mred'"
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true
daemon_pid=""

# 7. check --repair on logs damaged by hand: a truncated log reads again, a
#    deleted one takes its sidecars and its empty directory with it.
many_log=$(ls data4/logs/many/*_$many_id.log)
truncate -s 100 "$many_log"
check "a truncated log is reported" bash -c "'$bin' check -c bytes.toml | grep -q '^truncated_log: run $many_id'"
check "logs cannot read it before the repair" bash -c "! '$bin' logs many $many_id --tail 2 -c bytes.toml 2>/dev/null"
check "check --repair makes it readable again" bash -c "'$bin' check --repair -c bytes.toml >/dev/null && '$bin' check -c bytes.toml >/dev/null"
check "logs --tail 2 reads the truncated log" bash -c "'$bin' logs many $many_id --tail 2 -c bytes.toml | grep -qx 36"
long_log=$(ls data4/logs/long/*_$long_id.log)
rm "$long_log"
check "a log deleted by hand is reported" bash -c "'$bin' check -c bytes.toml | grep -q '^missing_log: run $long_id'"
check "check --repair removes its sidecars and the empty directory" bash -c \
  "'$bin' check --repair -c bytes.toml >/dev/null && '$bin' check -c bytes.toml >/dev/null && test ! -e data4/logs/long"

# 8. The run counts kept per task (task_stats), broken by hand: check names
#    the task, --repair recounts, `tasks` shows the real count again.
sqlite3 data4/cronkeep.db "UPDATE task_stats SET runs = runs + 5 WHERE task = 'many'"
check "a wrong run count is reported" bash -c "'$bin' check -c bytes.toml | grep -q '^task_counts: many: '"
check "check --repair recounts it" bash -c "'$bin' check --repair -c bytes.toml >/dev/null && '$bin' check -c bytes.toml >/dev/null"
check "the count is the history's again" test "$(sqlite3 data4/cronkeep.db "SELECT runs FROM task_stats WHERE task = 'many'")" = \
  "$(sqlite3 data4/cronkeep.db "SELECT COUNT(*) FROM runs WHERE task = 'many'")"

# 9. The PostgreSQL backend is a module (cronkeep-postgres.so) loaded only for
# backend = "postgres": the binary does not link libpq, and a missing module
# is an error that names the file, not a crash.
cat > pgmod.toml <<'TOML'
[daemon]
data_dir = "data-pgmod"
[storage]
backend = "postgres"
postgres_url = "postgresql:///nodb?host=/nonexistent-dir"
TOML
mkdir -p no-modules
check "the binary does not link libpq" bash -c "! ldd '$bin' | grep -q libpq"
# Nor OpenSSL: https:// webhooks and signatures load cronkeep-tls.so.
check "the binary links neither libssl nor libcrypto" bash -c "! ldd '$bin' | grep -Eq 'libssl|libcrypto'"
# Nor libsystemd: it is opened under systemd only (tests/systemd_notify.sh).
check "the binary does not link libsystemd" bash -c "! ldd '$bin' | grep -q libsystemd"
check "the module sits beside the binary" test -f "$(dirname "$bin")/cronkeep-postgres.so"
check "a missing module is an error naming the file" bash -c \
  "! CRONKEEP_MODULE_DIR='$work/no-modules' '$bin' tasks -c pgmod.toml 2>pgmod.err && grep -q 'no-modules/cronkeep-postgres.so' pgmod.err"
check "with the module, an unreachable server is an error naming it" bash -c \
  "! '$bin' tasks -c pgmod.toml 2>pgmod.err && grep -q 'nonexistent-dir' pgmod.err && ! grep -q 'cronkeep-postgres.so' pgmod.err"
# The README's install: `cmake --install build --prefix PREFIX` puts the
# binary in PREFIX/bin and the modules in PREFIX/lib/cronkeep, where the
# installed binary finds them.
cmake --install "$(dirname "$bin")" --prefix "$work/prefix" > install.log
check "cmake --install puts the binary and the module where the README says" \
  test -x prefix/bin/cronkeep -a -f prefix/lib/cronkeep/cronkeep-postgres.so -a -f prefix/lib/cronkeep/cronkeep-tls.so
check "the installed binary finds its module" bash -c \
  "! prefix/bin/cronkeep tasks -c pgmod.toml 2>pgmod.err && grep -q 'nonexistent-dir' pgmod.err && ! grep -q 'cronkeep-postgres.so' pgmod.err"

# 10. A signed webhook: the binary, which has libstdc++ linked in, loads
#     cronkeep-tls.so (which brings the shared libstdc++) to sign the body
#     with HMAC-SHA256; a receiver checks the signature.
hook_port=$(free_port)
echo "s3cret" > hook.secret
python3 - "$hook_port" > hook.log 2>&1 <<'PY' &
import hashlib, hmac, http.server, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        want = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        ok = self.headers.get("X-Cronkeep-Signature") == want
        print("signature", "ok" if ok else "wrong", self.headers.get("X-Cronkeep-Event"), flush=True)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
PY
hook_pid=$!
cat > hook.toml <<TOML
[daemon]
data_dir = "data-hook"
listen = "127.0.0.1:$(free_port)"
[defaults]
notify = ["ops"]
[notify.ops]
webhook = "http://127.0.0.1:$hook_port/hook"
secret_file = "$work/hook.secret"
[tasks.fail]
cron = "@every 1s"
run = "exit 3"
TOML
"$bin" daemon -c hook.toml > hook-daemon.log 2>&1 &
daemon_pid=$!
check "a failed run's webhook arrives signed with the secret" wait_for 20 grep -q "^signature ok failed" hook.log
check "the daemon signed it through the TLS module" grep -q cronkeep-tls.so "/proc/$daemon_pid/maps"
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""
kill "$hook_pid"; wait "$hook_pid" 2>/dev/null || true; hook_pid=""

if [ "$failures" -ne 0 ]; then echo "e2e: $failures check(s) failed"; exit 1; fi
echo "e2e: all checks passed"
