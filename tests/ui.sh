#!/usr/bin/env bash
# The web UI in a real browser: Debian's chromium driven by playwright-core
# (ui/tests/, installed by scripts/setup.sh with `npm ci`), against a real
# daemon on a temporary data directory and a free port; first, that the
# vendored chart library matches its locked npm package.
#
#   tests/ui.sh build/cronkeep [SCREENSHOT_DIR]
#
# Exits 77 (skipped) only when chromium is absent.
set -euo pipefail
binary=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
# The vendored uPlot in ui/assets must be exactly the locked package's files
# (ui/tests/package-lock.json, installed by npm ci): checked whenever
# node_modules is there, chromium or not.
if [ -d "$root/ui/tests/node_modules/uplot" ]; then
  node "$root/ui/tests/vendor.mjs" --check
fi
if [ ! -x "${CRONKEEP_CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "SKIP: /usr/bin/chromium is absent (scripts/setup.sh installs Debian's chromium)"
  exit 77
fi
if [ ! -d "$root/ui/tests/node_modules/playwright-core" ] || [ ! -d "$root/ui/tests/node_modules/uplot" ]; then
  echo "ui/tests/node_modules is missing: run scripts/setup.sh (or npm ci in ui/tests)" >&2
  exit 1
fi
shots=${2:+$(realpath "$2")}
exec node "$root/ui/tests/ui.test.mjs" "$binary" ${shots:+"$shots"}
