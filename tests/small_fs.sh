#!/usr/bin/env bash
# A full disk, for real: the data directory on a 20 MB tmpfs, a task that
# writes 30 MB. The run's real result is kept in memory while the database
# cannot take it and recorded once space returns (exit code 0, not crashed);
# /healthz says degraded meanwhile; a purge through the API works on the full
# disk (the space reserve); no fire is lost without a row. Needs root to
# mount the tmpfs; skipped (77) otherwise.
# Usage: tests/small_fs.sh PATH/TO/cronkeep
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/cronkeep-smallfs-XXXXXX)
pid=""
mounted=""
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ -n "$mounted" ] && umount "$work/mnt" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/mnt"
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=20m tmpfs "$work/mnt" 2>/dev/null; then
  echo "small_fs: skipped (mounting a tmpfs needs root)"; exit 77
fi
mounted=1
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > c.toml <<TOML
[daemon]
data_dir = "mnt/data"
listen = "127.0.0.1:$port"
[storage]
min_free_space = "0"
[retention]
schedule = "@yearly"
[compactor]
schedule = "@yearly"
[tasks.writer]
cron = "@yearly"
run = "head -c 30000000 /dev/zero | tr '\\\\0' x; echo; exit 0"
[tasks.ticker]
cron = "@every 1s"
run = "true"
[tasks.old]
cron = "@yearly"
run = "head -c 2000000 /dev/zero | tr '\\\\0' y"
TOML
failures=0
check() { local what=$1; shift; if "$@"; then echo "ok   - $what"; else echo "FAIL - $what"; failures=$((failures + 1)); fi; }
health() { curl -s -o /dev/null -w '%{http_code}' "localhost:$port/healthz"; }
token() { cat mnt/data/token; }

"$bin" daemon -c c.toml > daemon.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ "$(health)" = 200 ] && break; sleep 0.1; done
for _ in 1 2 3; do "$bin" run old --wait -c c.toml > /dev/null; done   # something to purge later
# The writer fills the file system; then the rest of it goes to a filler file,
# so the database has no room left for the run's end either.
writer=$(curl -s -X POST -H "Authorization: Bearer $(token)" "localhost:$port/api/tasks/writer/run" |
         python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 1 300); do grep -q "disk pressure\|No space left" daemon.log && break; sleep 0.1; done
dd if=/dev/zero of=mnt/filler bs=64k 2>/dev/null || true
for _ in $(seq 1 300); do grep -q "cannot record its end" daemon.log && break; sleep 0.1; done
check "the daemon kept the run's end in memory" grep -q "run $writer: cannot record its end" daemon.log
check "/healthz says degraded (503) while writes fail" test "$(health)" = 503
curl -s "localhost:$port/healthz" | grep -q 'database or disk is full' || echo "     (healthz: $(curl -s "localhost:$port/healthz"))"
sleep 2  # the ticker's fires meanwhile cannot be recorded
# A purge works on the full disk: the reserve is given up for it.
out=$(curl -s -X POST -H "Authorization: Bearer $(token)" -d '{"older_than": "0s", "task": "old", "all": true}' \
      "localhost:$port/api/maintenance/purge")
check "a purge through the API frees space on the full disk" python3 -c "import json,sys; r=json.loads(sys.argv[1]); assert r['runs'] == 3, r" "$out"
rm -f mnt/filler
for _ in $(seq 1 100); do [ "$(health)" = 200 ] && break; sleep 0.1; done
check "/healthz is ok again once space returns" test "$(health)" = 200
check "the run's real end was recorded: succeeded, exit code 0" bash -c \
  "'$bin' runs writer --json -c c.toml | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x[\"id\"]==$writer][0]; assert r[\"status\"]==\"succeeded\" and r[\"exit_code\"]==0, r'"
check "fires that could not be recorded are recorded as missed" bash -c \
  "'$bin' runs ticker --status missed --json -c c.toml | grep -q 'could not be recorded when due'"
check "the run is counted once in /metrics" bash -c \
  "curl -s localhost:$port/metrics | grep -q '^cronkeep_runs_finished_total{task=\"writer\",status=\"succeeded\"} 1$'"
kill -TERM "$pid"; wait "$pid" || true; pid=""
"$here/invariants.sh" "$bin" c.toml mnt/data || failures=$((failures + 1))
[ "$failures" -eq 0 ] && echo "small fs: every check passed"
exit "$failures"
