#!/usr/bin/env bash
# import-crontab (issue 13 item 6), driven as a user would: a realistic user
# crontab and a system one (variable lines, MAILTO, CRON_TZ, @reboot, %, a
# line cronkeep's cron parser refuses) are converted; the output loads with
# `cronkeep validate` (alone and after a [daemon] section) and with Python's
# tomllib; warnings reach stderr as file:line; stdin and "-" work; an
# unreadable file exits 1; every system crontab of this machine converts and
# loads; and the daemon runs converted jobs with cron's stdin and shell.
# Usage: import_crontab.sh PATH/TO/cronkeep
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=$(realpath "$1")
work=$(mktemp -d /tmp/cronkeep-import-XXXXXX)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  [ -n "${IMPORT_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
failures=0

# 1. A user crontab: every task loads; what cannot be carried over is a
#    comment in the output and a file:line warning on stderr.
cat > user.crontab <<'CRONTAB'
# m h dom mon dow command
SHELL=/bin/bash
PATH=/usr/local/bin:/usr/bin:/bin
MAILTO="ops@example.com"
CRON_TZ=Europe/Berlin
0 5 * * 1 tar -zcf /var/backups/home.tgz /home/
*/10 * * * * /usr/bin/php /var/www/cron.php > /dev/null 2>&1
@reboot /usr/local/bin/start-tunnel
30 2 * * 0 mysqldump --all-databases | gzip > /backup/db-$(date +\%F).sql.gz
15 14 1 * * mail -s "It's 2:15pm" john%Hi John,%%Time for lunch.%
61 25 * * * /usr/local/bin/broken
@hourly echo "quotes ' \" \\ ünïcode ✓"
CRONTAB
check "a user crontab converts (exit 0)" bash -c "'$bin' import-crontab user.crontab > user.toml 2> user.err"
check "validate loads the output" bash -c "'$bin' validate -c user.toml > user.validate"
check "with its six tasks" grep -q '^user.toml: OK, 6 task(s)$' user.validate
check "MAILTO is a warning with file:line" grep -q '^user.crontab:4: MAILTO=ops@example.com: cronkeep sends no mail' user.err
check "@reboot is a warning with file:line" grep -q '^user.crontab:8: @reboot: cronkeep has no boot trigger' user.err
check "the refused line is a warning with the parser's reason" \
  grep -q '^user.crontab:11: not converted: time fields "61 25 \* \* \*": minute field "61"' user.err
check "and a comment holding the line" grep -q '^#   61 25 \* \* \* /usr/local/bin/broken$' user.toml
check "the warnings are counted on stderr" grep -q '^user.crontab: 6 task(s), 3 warning(s)' user.err
check "nothing but TOML on stdout" bash -c "! grep -q 'warning(s)' user.toml"
check "Python's tomllib reads the same tasks" python3 - user.toml <<'PY'
import sys, tomllib
tasks = tomllib.load(open(sys.argv[1], "rb"))["tasks"]
assert sorted(tasks) == ["echo", "mail", "mysqldump", "php", "start-tunnel", "tar"], sorted(tasks)
assert tasks["tar"] == {"cron": "0 5 * * 1", "run": "exec /bin/bash -c 'tar -zcf /var/backups/home.tgz /home/'",
                        "timezone": "Europe/Berlin",
                        "env": {"SHELL": "/bin/bash", "PATH": "/usr/local/bin:/usr/bin:/bin",
                                "MAILTO": "ops@example.com", "CRON_TZ": "Europe/Berlin"}}, tasks["tar"]
assert "cron" not in tasks["start-tunnel"]
assert tasks["mail"]["run"] == ("exec /bin/bash -c 'mail -s \"It'\\''s 2:15pm\" john' <<'CRONKEEP_STDIN'\n"
                                "Hi John,\n\nTime for lunch.\nCRONKEEP_STDIN\n"), tasks["mail"]["run"]
assert "date +%F" in tasks["mysqldump"]["run"]
assert tasks["echo"]["run"] == "exec /bin/bash -c 'echo \"quotes '\\'' \\\" \\\\ ünïcode ✓\"'", tasks["echo"]["run"]
PY

# 2. Appended to a configuration with a [daemon] section, it loads too.
{ printf '[daemon]\ndata_dir = "data"\ntimezone = "Europe/Berlin"\n\n'; cat user.toml; } > with-daemon.toml
check "the output appended to a [daemon] section loads" bash -c "'$bin' validate -c with-daemon.toml > /dev/null"

# 3. A system crontab from stdin: --system reads the user field.
cat > system.crontab <<'CRONTAB'
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
17 *	* * *	root	cd / && run-parts --report /etc/cron.hourly
25 6	* * *	root	test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }
@reboot root /usr/local/bin/on-boot
* * * * * nobody
CRONTAB
check "a system crontab converts from stdin" bash -c "'$bin' import-crontab --system < system.crontab > system.toml 2> system.err"
check "validate loads it" bash -c "'$bin' validate -c system.toml > /dev/null"
check "the user field became user" test "$(grep -c '^user = "root"$' system.toml)" -eq 3
check "stdin is named in the warnings" grep -q '^stdin:6: not converted: no command after the user field' system.err
check "\"-\" reads stdin too" bash -c "'$bin' import-crontab --system - < system.crontab 2>/dev/null | cmp -s - system.toml"
check "without --system the user field is part of the command" \
  bash -c "'$bin' import-crontab system.crontab 2>/dev/null | grep -qxF 'run = \"root /usr/local/bin/on-boot\"'"

# 4. Every system crontab of this machine (read only) converts, in the
#    system format found from its path, and loads.
for f in /etc/crontab /etc/cron.d/*; do
  [ -f "$f" ] && [ -r "$f" ] || continue
  name=$(basename "$f")
  check "$f converts and loads" bash -c "'$bin' import-crontab '$f' > 'etc-$name.toml' 2>/dev/null &&
    '$bin' validate -c 'etc-$name.toml' > /dev/null && ! grep -q 'no user field' 'etc-$name.toml' &&
    grep -q '(system crontab format)' 'etc-$name.toml'"
done

# 5. Refusals: an unreadable crontab exits 1, a bad --prefix 2.
set +e
"$bin" import-crontab missing.crontab > missing.out 2> missing.err; rc_missing=$?
"$bin" import-crontab "$work" > /dev/null 2> dir.err; rc_dir=$?
"$bin" import-crontab --prefix 'a b' user.crontab > /dev/null 2> prefix.err; rc_prefix=$?
set -e
check "a missing crontab exits 1" test "$rc_missing" -eq 1
check "saying so" grep -q '^cronkeep: cannot read the crontab missing.crontab: No such file or directory$' missing.err
check "and prints no TOML" test ! -s missing.out
check "a directory exits 1" test "$rc_dir" -eq 1
check "saying so" grep -q 'Is a directory' dir.err
check "a bad --prefix exits 2" test "$rc_prefix" -eq 2
check "--prefix names the tasks" bash -c "'$bin' import-crontab --prefix web1 user.crontab 2>/dev/null | grep -q '^\[tasks.web1-tar\]$'"

# 6. The daemon runs converted jobs as cron would: the text after % on
#    stdin, the variables in the environment, SHELL running the command.
cat > run.crontab <<'CRONTAB'
@reboot cat%line one%100\% line two%
MSG="from the crontab"
SHELL=/bin/bash
@reboot echo "${BASH_VERSION:+bash}: $MSG"
CRONTAB
port=$(free_port)
{ printf '[daemon]\ndata_dir = "data"\nlisten = "127.0.0.1:%s"\n\n' "$port"; "$bin" import-crontab run.crontab 2>/dev/null; } > run.toml
"$bin" daemon -c run.toml > daemon.log 2>&1 &
daemon_pid=$!
check "the daemon starts on the converted configuration" wait_for 10 curl -sf "http://127.0.0.1:$port/healthz"
check "the % job succeeds" bash -c "'$bin' run cat --wait -c run.toml > /dev/null"
last_run() { "$bin" runs "$1" --json -c run.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])'; }
check "and read cron's stdin" test "$("$bin" logs cat "$(last_run cat)" -c run.toml)" = "$(printf 'line one\n100%% line two')"
check "the SHELL job succeeds" bash -c "'$bin' run echo --wait -c run.toml > /dev/null"
check "through bash, with the crontab's variable" \
  test "$("$bin" logs echo "$(last_run echo)" -c run.toml)" = "bash: from the crontab"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=""

[ "$failures" -eq 0 ] || { echo "import_crontab: $failures check(s) failed"; exit 1; }
echo "import_crontab: all checks passed"
