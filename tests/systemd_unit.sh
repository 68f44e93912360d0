#!/usr/bin/env bash
# `systemd-analyze verify` of the shipped unit (contrib/cronkeep.service);
# any output (a warning or an error) fails the test. verify wants the
# ExecStart binary to exist, so a copy of the unit, identical but for the
# binary's path (the one just built), is what gets verified. Skipped (77)
# without systemd-analyze.
# Usage: systemd_unit.sh PATH/TO/cronkeep SOURCE_DIR
set -euo pipefail
bin=$(realpath "$1")
unit="$2/contrib/cronkeep.service"
command -v systemd-analyze >/dev/null || { echo "skip: no systemd-analyze"; exit 77; }
work=$(mktemp -d /tmp/cronkeep-unit-XXXXXX)
trap 'rm -rf "$work"' EXIT

grep -q '^ExecStart=/usr/local/bin/cronkeep daemon -c /etc/cronkeep/cronkeep.toml$' "$unit" ||
  { echo "FAIL - the shipped ExecStart is not /usr/local/bin/cronkeep daemon -c /etc/cronkeep/cronkeep.toml"; exit 1; }
grep -q '^Type=notify$' "$unit" || { echo "FAIL - the unit is not Type=notify"; exit 1; }
sed "s#^ExecStart=/usr/local/bin/cronkeep #ExecStart=$bin #" "$unit" > "$work/cronkeep.service"
# --man=no: no man pages to look up in a container.
out=$(cd "$work" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no ./cronkeep.service 2>&1) && rc=0 || rc=$?
if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
  echo "FAIL - systemd-analyze verify (exit $rc):"
  echo "$out"
  exit 1
fi
echo "ok   - systemd-analyze verify: no warning, no error ($(systemd-analyze --version | head -1))"
