#!/usr/bin/env bash
# Abuse: while 20 tasks fire every second, the API gets many idle
# connections, oversized headers and bodies, and a burst from wrk. The daemon
# must keep firing on time and answer /healthz; the script reports the
# scheduler's lateness during the abuse and how long /healthz took.
# Usage: tests/abuse.sh PATH/TO/cronkeep [SECONDS=8]
set -euo pipefail
bin=$(realpath "$1"); secs=${2:-8}
work=$(mktemp -d /tmp/cronkeep-abuse-XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
  echo '[daemon]'; echo 'data_dir = "data"'; echo "listen = \"127.0.0.1:$port\""
  echo '[storage]'; echo 'min_free_space = "0"'
  for i in $(seq 1 20); do printf '[tasks.t%02d]\ncron = "@every 1s"\nrun = "true"\n' "$i"; done
} > c.toml
"$bin" daemon -c c.toml > daemon.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "localhost:$port/healthz" >/dev/null && break; sleep 0.1; done
from=$(date +%s%3N)
failures=0
check() { local what=$1; shift; if "$@"; then echo "ok   - $what"; else echo "FAIL - $what"; failures=$((failures + 1)); fi; }

python3 - "$port" "$secs" > abuse.out <<'PY' &
import socket, sys, time, urllib.request
port, secs = int(sys.argv[1]), float(sys.argv[2])
idle = []
for _ in range(100):  # connections that never send a byte
    s = socket.socket(); s.connect(("127.0.0.1", port)); idle.append(s)
def raw(data):
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    s.sendall(data)
    try: reply = s.recv(200)
    except socket.timeout: reply = b"(timeout)"
    s.close()
    return reply.split(b"\r\n")[0].decode(errors="replace")
print("oversized header:", raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"))
print("oversized body:", raw(b"POST /api/maintenance/purge HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n" + b"{" * 100000))
print("garbage:", raw(b"\x00\x01\x02 not http at all\r\n\r\n"))
worst = 0.0
end = time.time() + secs
while time.time() < end:
    t = time.time()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=20) as r:
        assert r.status == 200
    worst = max(worst, time.time() - t)
    time.sleep(0.2)
print(f"healthz worst {worst*1000:.0f} ms")
for s in idle: s.close()
PY
abuser=$!
if command -v wrk >/dev/null; then
  wrk -t2 -c64 -d"${secs}s" "http://127.0.0.1:$port/api/tasks" > wrk.txt 2>&1 || true
else
  echo "(wrk not installed: no burst)" > wrk.txt
fi
wait $abuser || true
to=$(date +%s%3N)
cat abuse.out | sed 's/^/     /'
check "an oversized header is refused" grep -qE "oversized header: HTTP/1.1 4[0-9][0-9]" abuse.out
check "an oversized body is refused with 413" grep -q "oversized body: HTTP/1.1 413" abuse.out
check "/healthz kept answering" grep -q "healthz worst" abuse.out
echo "     wrk: $(grep 'Requests/sec' wrk.txt | tr -s ' ')"
lat=$(sqlite3 data/cronkeep.db "SELECT started_at - scheduled_at FROM runs WHERE trigger='schedule' AND started_at IS NOT NULL AND scheduled_at BETWEEN $from AND $to ORDER BY 1" |
  python3 -c 'import sys; v=sorted(int(x) for x in sys.stdin if x.strip()); q=lambda p: v[min(len(v)-1,int(p*len(v)))]; print(f"{len(v)} {q(.5)} {q(.99)} {v[-1]}")')
read -r n p50 p99 max <<< "$lat"
echo "     scheduler lateness during the abuse: $n fires, p50 $p50 ms, p99 $p99 ms, max $max ms (goal p99 < 20 ms)"
expected=$(( (to - from) / 1000 * 20 ))
check "the tasks kept firing ($n fires of about $expected)" test "$n" -ge $((expected * 8 / 10))
kill -TERM $pid; wait $pid; pid=""
[ "$failures" -eq 0 ] && echo "abuse: the daemon held"
exit "$failures"
