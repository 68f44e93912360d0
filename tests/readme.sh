#!/usr/bin/env bash
# Runs the README's commands exactly as written, as a new user would: the
# example daemon (`build/cronkeep daemon -c examples/cronkeep.toml`), then
# every line of the "Try it" and "HTTP API" blocks, in a scratch copy of the
# repository's layout (examples/ copied, build/cronkeep linked), each of which
# must exit 0 and print something. The first block's setup and test commands
# are what CI itself runs; "Building by hand" is what scripts/setup.sh does.
# The example listens on 127.0.0.1:7070, as the README says: that port must
# be free. Usage: readme.sh PATH/TO/cronkeep SOURCE_DIR
set -euo pipefail
bin=$(realpath "$1")
src=$(realpath "$2")
work=$(mktemp -d /tmp/cronkeep-readme-XXXXXX)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/build"
cp -r "$src/examples" "$work/examples"
rm -rf "$work/examples/cronkeep-data"
ln -s "$bin" "$work/build/cronkeep"
cd "$work"
failures=0

# The README's blocks: the daemon command from the first, then each command
# of the "Try it" and "HTTP API" blocks (continuation lines joined).
python3 - "$src/README.md" > commands.txt <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"^## (.*?)\n(.*?)(?=^## |\Z)", text, re.S | re.M)
for title, body in blocks:
    for code in re.findall(r"```sh\n(.*?)```", body, re.S):
        lines = code.replace("\\\n", " ").splitlines()
        for line in lines:
            line = line.strip()
            if not line:
                continue
            if title == "Two commands":
                if "daemon" in line:
                    print("DAEMON\t" + line.split("&&", 1)[1].split("#", 1)[0].strip())
            elif title in ("Try it", "HTTP API"):
                print("RUN\t" + line)
PY
daemon_cmd=$(grep '^DAEMON' commands.txt | cut -f2)
[ -n "$daemon_cmd" ] || { echo "FAIL - no daemon command found in the README"; exit 1; }
bash -c "$daemon_cmd" > daemon.log 2>&1 &
daemon_pid=$!
# What the commands read must exist: heartbeat's run 1, and a timed-out run of slow.
deadline=$((SECONDS + 60))
until build/cronkeep runs slow -c examples/cronkeep.toml --status timeout --json 2>/dev/null | grep -q '"id"' &&
      build/cronkeep logs heartbeat 1 -c examples/cronkeep.toml >/dev/null 2>&1; do
  [ $SECONDS -ge $deadline ] && { echo "FAIL - the example never produced its runs"; cat daemon.log; exit 1; }
  sleep 0.5
done
echo "ok   - the example daemon started: $daemon_cmd"
while IFS=$'\t' read -r kind cmd; do
  [ "$kind" = RUN ] || continue
  if out=$(timeout 60 bash -c "$cmd" 2>&1) && [ -n "$out" ] && ! grep -q "\"error\"" <<< "$out"; then
    echo "ok   - $cmd"
  else
    echo "FAIL - $cmd"; echo "$out" | head -5; failures=$((failures + 1))
  fi
done < commands.txt
[ "$(grep -c '^RUN' commands.txt)" -ge 9 ] || { echo "FAIL - fewer README commands than expected"; failures=$((failures + 1)); }
if [ "$failures" -ne 0 ]; then echo "readme: $failures command(s) failed"; exit 1; fi
echo "readme: every command the README shows ran"
