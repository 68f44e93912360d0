#!/usr/bin/env bash
# Two nodes, one PostgreSQL: two real daemons (two processes, two data
# directories) share the database given by CRONKEEP_TEST_PG_URL (run this
# through tests/with_pg.sh). Checks that
#   1. every fire (task, scheduled_at) of `@every 1s` tasks is recorded exactly
#      once, and both nodes ran some; a task pinned to b ran on b only;
#   2. a second process under a node name in use is refused (exit 1);
#   3. `cronkeep nodes` and GET /api/nodes list both nodes; a run's log is
#      readable through the other node's API and CLI (forwarded);
#   4. a node killed with kill -9 is declared dead by the other after the
#      lease: its in-flight run becomes crashed with its name in the message;
#   5. an unreachable server: exit 1, the URL named with its password masked.
# Usage: pg_nodes.sh PATH/TO/cronkeep [SECONDS]. Processes are killed by PID.
set -euo pipefail
bin=$(realpath "$1")
seconds=${2:-6}
url=${CRONKEEP_TEST_PG_URL:?run through tests/with_pg.sh}
work=$(mktemp -d /tmp/cronkeep-nodes-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
failures=0
check() {
  local what=$1; shift
  if "$@"; then echo "ok   - $what"; else echo "FAIL - $what"; failures=$((failures + 1)); fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
sql() { psql "$url" -Atqc "$1"; }

write_config() {  # write_config NAME PORT
  cat > "$1.toml" <<TOML
[daemon]
data_dir = "data-$1"
listen = "127.0.0.1:$2"
node = "$1"
node_lease = "3s"
token_file = "token"
shutdown_timeout = "2s"

[storage]
backend = "postgres"
postgres_url = "$url"

[tasks.tick]
cron = "@every 1s"
run = "echo tick-output"

[tasks.tock]
cron = "@every 1s"
run = "echo tock-output; sleep 0.3"

[tasks.pinned]
cron = "@every 1s"
run = "true"
nodes = ["b"]

[tasks.long]
cron = "@every 1s"
run = "sleep 30"
max_concurrent = 5
on_overlap = "skip"
TOML
}

(umask 077; echo "shared-test-token-0123456789abcdef0123456789" > token)
port_a=$(free_port)
port_b=$(free_port)
write_config a "$port_a"
write_config b "$port_b"
"$bin" daemon -c a.toml > a.log 2>&1 & pids+=($!); pid_a=$!
"$bin" daemon -c b.toml > b.log 2>&1 & pids+=($!); pid_b=$!
sleep "$seconds"

# 2. The same name twice.
set +e

sed -e "s/data-a/data-a2/" -e "s/$port_a/$(free_port)/" a.toml > a2.toml
timeout 10 "$bin" daemon -c a2.toml > a2.log 2>&1
rc=$?
set -e
check "a second process named a is refused (exit 1)" test "$rc" -eq 1
check "it says the name is in use" grep -q "another process is running as node a" a2.log

# 1. Exactly once.
dups=$(sql "SELECT COUNT(*) FROM (SELECT task, scheduled_at FROM runs WHERE trigger IN ('schedule','catch_up')
            GROUP BY 1, 2 HAVING COUNT(*) > 1) d")
fires=$(sql "SELECT COUNT(*) FROM runs WHERE trigger IN ('schedule','catch_up') AND task IN ('tick','tock')")
by_a=$(sql "SELECT COUNT(*) FROM runs WHERE node = 'a' AND task IN ('tick','tock')")
by_b=$(sql "SELECT COUNT(*) FROM runs WHERE node = 'b' AND task IN ('tick','tock')")
echo "     fires of tick and tock: $fires (node a $by_a, node b $by_b), recorded twice: $dups"
check "no fire recorded twice" test "$dups" -eq 0
check "fires were recorded (>= 2 per second per task)" test "$fires" -ge $((2 * (seconds - 2)))
check "node a ran some" test "$by_a" -gt 0
check "node b ran some" test "$by_b" -gt 0
pinned_b=$(sql "SELECT COUNT(*) FROM runs WHERE task = 'pinned' AND node = 'b'")
pinned_other=$(sql "SELECT COUNT(*) FROM runs WHERE task = 'pinned' AND node <> 'b'")
check "the task pinned to b ran on b ($pinned_b) and nowhere else ($pinned_other)" \
  test "$pinned_b" -ge $((seconds - 2)) -a "$pinned_other" -eq 0
# Every second of the window has one fire per task: no fire lost between nodes.
gaps=$(sql "SELECT COUNT(*) FROM (SELECT scheduled_at - LAG(scheduled_at) OVER (ORDER BY scheduled_at) AS d
            FROM runs WHERE task = 'tick') g WHERE d > 1000")
check "no fire of tick lost between the nodes" test "$gaps" -eq 0

# 3. Nodes listed.
"$bin" nodes -c a.toml > nodes.out
check "cronkeep nodes lists a and b" bash -c "grep -q '^a ' nodes.out && grep -q '^b ' nodes.out"
token=$(cat token)
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port_b/api/nodes" > nodes.json || true
check "GET /api/nodes lists both" python3 -c "
import json; n = json.load(open('nodes.json'))['nodes']; assert sorted(x['name'] for x in n) == ['a', 'b'], n"

# A run of b's with output (tick or tock, whichever b was offered first).
read -r b_task b_run < <(sql "SELECT task || ' ' || id FROM runs WHERE node = 'b' AND task IN ('tick','tock')
                              AND status = 'succeeded' ORDER BY id LIMIT 1" | tr -s ' ')
"$bin" logs "$b_task" "$b_run" -c a.toml > forwarded.out 2>&1 || true
check "node b's log read through node a's CLI ($b_task run $b_run)" grep -q "$b_task-output" forwarded.out
curl -fsS "http://127.0.0.1:$port_a/api/tasks/$b_task/runs/$b_run/log" > forwarded.json || true
check "node b's log read through node a's API" grep -q "$b_task-output" forwarded.json

# 4. Kill a: after the lease b declares it dead; its in-flight runs crash.
long_a=$(sql "SELECT COUNT(*) FROM runs WHERE node = 'a' AND status = 'running'")
kill -9 "$pid_a"
sleep 5
check "node a is declared dead by b" bash -c "[ \"\$(psql '$url' -Atqc \"SELECT declared_dead_by FROM nodes WHERE name = 'a'\")\" = b ]"
left=$(sql "SELECT COUNT(*) FROM runs WHERE node = 'a' AND status IN ('pending','running')")
crashed=$(sql "SELECT COUNT(*) FROM runs WHERE node = 'a' AND status = 'crashed' AND message LIKE '%node a%'")
echo "     node a had $long_a run(s) running; after the lease: $left in flight, $crashed crashed naming it"
check "no run of a left in flight" test "$left" -eq 0
check "a's running runs crashed with its name" test "$crashed" -ge "$long_a"
check "b keeps firing alone" bash -c "sleep 2; [ \"\$(psql '$url' -Atqc \"SELECT COUNT(*) FROM runs WHERE node = 'b' AND task = 'tick' AND created_at > (extract(epoch FROM now()) * 1000 - 1500)::bigint\")\" -ge 1 ]"
kill -TERM "$pid_b"
wait "$pid_b" 2>/dev/null || true
# A clean stop frees the name at once: b starts again within the lease.
"$bin" daemon -c b.toml > b2.log 2>&1 & pids+=($!); pid_b=$!
sleep 1.5
check "node b restarts at once after a clean stop" kill -0 "$pid_b"
kill -TERM "$pid_b"
wait "$pid_b" 2>/dev/null || true

# 5. Unreachable server.
sed -e 's|^postgres_url = .*|postgres_url = "postgresql://me:secret@/nodb?host=/nonexistent\&connect_timeout=2"|' b.toml > bad.toml
set +e
timeout 10 "$bin" daemon -c bad.toml > bad.log 2>&1
rc=$?
set -e
check "an unreachable server: exit 1" test "$rc" -eq 1
check "the URL is named, its password masked" bash -c "grep -q 'postgresql://me:\*\*\*@' bad.log && ! grep -q secret bad.log"

if [ "$failures" -gt 0 ]; then
  echo "pg_nodes: $failures check(s) failed"; echo "--- a.log"; tail -20 a.log; echo "--- b.log"; tail -20 b.log
  exit 1
fi
echo "pg_nodes: every check passed"
