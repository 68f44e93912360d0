#!/usr/bin/env bash
# The data directory invariants after a crash and a clean restart, for the
# chaos and crash-point tests. Usage: tests/invariants.sh CRONKEEP CONFIG DATA_DIR [--archived]
# --archived: the configuration has archived purged runs since the first run
# ([retention] archive = true), so every run id ever given out is either in
# the history or in the archive.
# Prints one line per invariant; exits non-zero when any is broken.
set -uo pipefail
bin=$1; config=$2; data=$3; archived=${4:-}
failures=0
check() { local what=$1; shift; if "$@"; then echo "ok   - $what"; else echo "FAIL - $what"; failures=$((failures + 1)); fi; }
in_flight=$(sqlite3 "$data/cronkeep.db" "SELECT COUNT(*) FROM runs WHERE status IN ('pending','running')")
check "no run is pending or running ($in_flight)" test "$in_flight" -eq 0
integrity=$(sqlite3 "$data/cronkeep.db" "PRAGMA integrity_check")
check "integrity_check is ok ($integrity)" test "$integrity" = ok
check "rows and log files match one to one, no tombstone left" python3 - "$data" <<'PY'
import os, sqlite3, sys
data = sys.argv[1]
db = sqlite3.connect(os.path.join(data, "cronkeep.db"))
rows = {p for (p,) in db.execute("SELECT log_path FROM runs WHERE log_path != ''")}
files = set()
for root, _, names in os.walk(os.path.join(data, "logs")):
    for n in names:
        if n.endswith(".log"):
            files.add(os.path.relpath(os.path.join(root, n), data))
missing, orphans = rows - files, files - rows
tombstones = db.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0]
print(f"     {len(rows)} rows with logs, {len(files)} log files, {len(missing)} missing, {len(orphans)} orphans, {tombstones} tombstones")
for p in sorted(missing)[:5]: print("     missing:", p)
for p in sorted(orphans)[:5]: print("     orphan:", p)
sys.exit(1 if missing or orphans or tombstones else 0)
PY
check "cronkeep check exits 0" "$bin" check -c "$config"
if [ "$archived" = --archived ]; then
  check "every run id ever given out is in the history or in the archive" python3 - "$bin" "$config" "$data" <<'PY'
import json, os, sqlite3, subprocess, sys
bin, config, data = sys.argv[1:4]
db = sqlite3.connect(os.path.join(data, "cronkeep.db"))
rows = {i for (i,) in db.execute("SELECT id FROM runs")}
top = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
top = top[0] if top else 0
def cli(*args):
    return subprocess.run([bin, *args, "-c", config], check=True, capture_output=True, text=True).stdout
archived = set()
for f in json.loads(cli("archive", "list", "--json"))["files"]:
    archived |= {json.loads(l)["run_id"] for l in cli("archive", "show", f["date"]).splitlines()}
lost = sorted(set(range(1, top + 1)) - rows - archived)
both = len(rows & archived)
print(f"     ids 1..{top}: {len(rows)} in the history, {len(archived)} archived ({both} in both), {len(lost)} lost")
for i in lost[:5]: print("     lost:", i)
sys.exit(1 if lost else 0)
PY
fi
exit "$failures"
