#!/usr/bin/env bash
# History pages on PostgreSQL with a long history: RUNS runs (default
# 10,000,000) across 100 tasks, one task holding 60% of them, written with
# generate_series into the schema a daemon created; then, through the
# daemon's API over one keep-alive connection, REPS requests each of the
# task's newest page (50 runs) and of a page 5,000,000 runs deep (keyset:
# ?before=ID), p50 and p99; GET /healthz over the same connection as the
# baseline. Run through tests/with_pg.sh:
#   tests/with_pg.sh bench/pg_history.sh build/cronkeep [RUNS=10000000] [REPS=1000]
set -euo pipefail
bin=$(realpath "$1"); runs=${2:-10000000}; reps=${3:-1000}
url=${CRONKEEP_TEST_PG_URL:?run through tests/with_pg.sh}
work=$(mktemp -d /tmp/cronkeep-pghist-XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
  printf '[daemon]\ndata_dir = "data"\nlisten = "127.0.0.1:%s"\n' "$port"
  printf '[storage]\nbackend = "postgres"\npostgres_url = "%s"\n' "$url"
  printf '[retention]\nschedule = "@yearly"\n[compactor]\nschedule = "@yearly"\n'
  for i in $(seq 0 99); do printf '[tasks.t%02d]\ncron = "@yearly"\nrun = "true"\n' "$i"; done
} > c.toml
up() {
  local s0; s0=$(date +%s.%N)
  "$bin" daemon -c c.toml > daemon.log 2>&1 & pid=$!
  for _ in $(seq 3000); do
    if curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
      echo "daemon answering after $(python3 -c "import time; print(f'{time.time() - $s0:.2f}')") s"
      return
    fi
    sleep 0.1
  done
  echo "the daemon did not start in 300 s"; cat daemon.log; exit 1
}
up  # creates the schema
kill -TERM $pid; wait $pid || true; pid=""
t0=$(date +%s)
psql "$url" -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO runs (id, task, trigger, status, scheduled_at, created_at, started_at, finished_at, exit_code,
                  duration_ms, log_path, log_bytes, node)
SELECT g, CASE WHEN g % 10 < 6 THEN 't00' ELSE 't' || lpad((1 + g % 99)::text, 2, '0') END, 'schedule',
       CASE WHEN g % 17 = 0 THEN 'failed' ELSE 'succeeded' END,
       1700000000000 + g * 1000, 1700000000000 + g * 1000, 1700000000000 + g * 1000, 1700000000000 + g * 1000 + 40,
       CASE WHEN g % 17 = 0 THEN 1 ELSE 0 END, 40, '', 0, 'bench'
FROM generate_series(1::bigint, $runs::bigint) g;
SELECT setval(pg_get_serial_sequence('runs', 'id'), $runs);
-- Rows written behind the store's back: their counts too (task_stats).
DELETE FROM task_stats; INSERT INTO task_stats (task, runs) SELECT task, COUNT(*) FROM runs GROUP BY task;
VACUUM ANALYZE runs;
SQL
echo "wrote $runs runs in $(( $(date +%s) - t0 )) s; database $(psql "$url" -Atqc "SELECT pg_size_pretty(pg_database_size(current_database()))")"
up
python3 - "$port" "$reps" "$runs" <<'PY'
import http.client, json, sys, time
port, reps, runs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
def get(path):
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, (path, r.status, body[:200])
    return body
def timed(path):
    v = []
    for _ in range(reps):
        t = time.perf_counter(); get(path); v.append((time.perf_counter() - t) * 1000)
    v.sort()
    return f"p50 {v[len(v)//2]:.2f} ms, p99 {v[min(len(v)-1, int(len(v)*.99))]:.2f} ms"
# t00 holds 60% of the runs: ids with g % 10 < 6; 5,000,000 of them deep is id ~ 8,333,333.
deep = min(runs, int(5_000_000 / 0.6))
page = json.loads(get(f"/api/tasks/t00/runs?limit=50&before={deep}"))["runs"]
assert len(page) == 50, len(page)
print(f"history of {runs} runs on PostgreSQL, {reps} requests each over one connection:")
print(f"  newest page of t00 (50 runs): {timed('/api/tasks/t00/runs?limit=50')}")
print(f"  page 5,000,000 runs deep    : {timed(f'/api/tasks/t00/runs?limit=50&before={deep}')}")
print(f"  GET /healthz (baseline)     : {timed('/healthz')}")
PY
