#!/usr/bin/env bash
# Runs the whole test suite: installs and builds (warnings are errors), then
# every unit test and end-to-end script through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
CRONKEEP_WERROR=ON scripts/setup.sh
cd build
ctest --output-on-failure -j 2 --timeout 300 "$@"
