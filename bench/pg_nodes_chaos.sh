#!/usr/bin/env bash
# Exactly once under node deaths: 3 nodes on one PostgreSQL server, TASKS
# tasks `@every 1s`, SECONDS seconds; every 30 s a random node is killed with
# kill -9 and started again once its lease has passed (node_lease = 10s
# here; a restart within the lease is refused: the name looks in use). A
# node that stopped by itself (declared dead by another, e.g. starved of CPU
# past its lease) is started again too, as systemd's Restart= would. Reports fires recorded twice (goal 0), fires
# of the window with no row at all (lost), fires recorded missed, and the
# scheduler lateness (started_at - scheduled_at) p50/p99 of the runs.
# Run it through tests/with_pg.sh (a throwaway cluster):
#   tests/with_pg.sh bench/pg_nodes_chaos.sh build/cronkeep [SECONDS=600] [TASKS=100] [ON_OVERLAP=queue]
# With ON_OVERLAP=queue (the default) a killed node's run counts as running
# until its lease ends and the task's next fires queue behind it, so the
# lateness measures that queue; ON_OVERLAP=skip measures the scheduler.
set -euo pipefail
bin=$(realpath "$1"); secs=${2:-600}; tasks=${3:-100}; overlap=${4:-queue}
url=${CRONKEEP_TEST_PG_URL:?run through tests/with_pg.sh}
work=$(mktemp -d /tmp/cronkeep-pgchaos-XXXXXX)
declare -A pid
cleanup() {
  for n in "${!pid[@]}"; do kill -9 "${pid[$n]}" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
sql() { psql "$url" -Atqc "$1"; }
(umask 077; echo "pg-chaos-shared-token-0123456789abcdef0123" > token)
nodes=(a b c)
for n in "${nodes[@]}"; do
  {
    printf '[daemon]\ndata_dir = "data-%s"\nlisten = "127.0.0.1:%s"\nnode = "%s"\nnode_lease = "10s"\n' "$n" "$(free_port)" "$n"
    printf 'token_file = "token"\nshutdown_timeout = "2s"\n'
    printf '[storage]\nbackend = "postgres"\npostgres_url = "%s"\n' "$url"
    # Retention still sweeps every hour (on one node), but keeps every run
    # of the window: the default keep_runs = 100 would delete the window's
    # older fires at the hour and count them lost.
    printf '[defaults]\nkeep_runs = 1000000\n'
    for i in $(seq 1 "$tasks"); do printf '[tasks.t%03d]\ncron = "@every 1s"\nrun = "true"\non_overlap = "%s"\n' "$i" "$overlap"; done
  } > "$n.toml"
done
start() { "$bin" daemon -c "$1.toml" >> "$1.log" 2>&1 & pid[$1]=$!; }
for n in "${nodes[@]}"; do start "$n"; done
sleep 5
from=$(( $(date +%s) * 1000 ))
end=$((SECONDS + secs))
kills=0
self_stops=0
while [ $SECONDS -lt $end ]; do
  sleep 30
  [ $SECONDS -ge $end ] && break
  for n in "${nodes[@]}"; do
    if ! kill -0 "${pid[$n]}" 2>/dev/null; then self_stops=$((self_stops + 1)); start "$n"; fi
  done
  victim=${nodes[$((RANDOM % 3))]}
  kill -9 "${pid[$victim]}" 2>/dev/null || true
  wait "${pid[$victim]}" 2>/dev/null || true
  kills=$((kills + 1))
  sleep 11
  start "$victim"
done
to=$(( $(date +%s) * 1000 - 5000 ))  # leave the last seconds to settle
sleep 8
for n in "${nodes[@]}"; do kill -TERM "${pid[$n]}" 2>/dev/null || true; done
for n in "${nodes[@]}"; do wait "${pid[$n]}" 2>/dev/null || true; unset "pid[$n]"; done

window="trigger IN ('schedule', 'catch_up') AND scheduled_at >= $from AND scheduled_at < $to"
expected=$(( (to - from) / 1000 * tasks ))
rows=$(sql "SELECT COUNT(*) FROM runs WHERE $window")
twice=$(sql "SELECT COUNT(*) FROM (SELECT task, scheduled_at FROM runs WHERE $window GROUP BY 1, 2 HAVING COUNT(*) > 1) d")
distinct=$(sql "SELECT COUNT(*) FROM (SELECT DISTINCT task, scheduled_at FROM runs WHERE $window) d")
missed=$(sql "SELECT COUNT(*) FROM runs WHERE $window AND status = 'missed'")
crashed=$(sql "SELECT COUNT(*) FROM runs WHERE $window AND status = 'crashed'")
caught=$(sql "SELECT COUNT(*) FROM runs WHERE $window AND trigger = 'catch_up'")
echo "3 nodes, $tasks tasks @every 1s, $((secs)) s, $kills kill -9 (each node restarted after the lease), $self_stops node(s) found stopped and restarted"
echo "  fires in the window: $expected expected, $distinct with a row ($rows rows)"
echo "  recorded twice: $twice (goal 0); without any row (lost): $((expected - distinct)); missed: $missed; caught up: $caught; crashed with their node: $crashed"
echo "  by node: $(sql "SELECT node || ' ' || COUNT(*) FROM runs WHERE $window GROUP BY node ORDER BY node" | tr '\n' ' ')"
sql "SELECT started_at - scheduled_at FROM runs WHERE $window AND trigger = 'schedule' AND started_at IS NOT NULL ORDER BY 1" |
  python3 -c 'import sys; v=sorted(int(x) for x in sys.stdin if x.strip()); q=lambda p: v[min(len(v)-1,int(p*len(v)))]; print(f"  lateness of the runs: p50 {q(.5)} ms, p99 {q(.99)} ms, max {v[-1]} ms ({len(v)} runs)")'
