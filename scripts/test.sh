#!/usr/bin/env bash
# Runs the whole test suite:
#   1. installs and builds (warnings are errors), then every unit test,
#      end-to-end script and the kill -9 chaos test (25 rounds) through CTest;
#   2. the suite again under AddressSanitizer + UndefinedBehaviorSanitizer
#      (chaos excluded: it kills processes on purpose);
#   3. the scheduler, runner, event bus and HTTP tests under ThreadSanitizer.
# Any sanitizer report fails the run.
#
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --quick    step 1 only
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1

CRONKEEP_WERROR=ON scripts/setup.sh
echo "== tests"
ctest --test-dir build --output-on-failure -j 2 --timeout 300
[ "$quick" = 1 ] && exit 0

jobs=$(nproc)
echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRONKEEP_SANITIZE="address;undefined" \
  -DCRONKEEP_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$jobs" > build-asan/build.log 2>&1 || { tail -40 build-asan/build.log; exit 1; }
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j 2 --timeout 300 -E chaos

echo "== scheduler, runner, bus and HTTP tests under ThreadSanitizer"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRONKEEP_SANITIZE=thread \
  -DCRONKEEP_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan -j "$jobs" --target cronkeep_tests > build-tsan/build.log 2>&1 ||
  { tail -40 build-tsan/build.log; exit 1; }
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  build-tsan/tests/cronkeep_tests --gtest_filter='SchedulerTest.*:Runner.*:Bus.*:HttpTest.*' --gtest_brief=1
echo "test.sh: every stage passed (tests, ASan+UBSan, TSan)"
