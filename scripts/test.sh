#!/usr/bin/env bash
# Runs the whole test suite:
#   1. installs and builds (warnings are errors), then every unit test,
#      end-to-end script and the kill -9 chaos test (25 rounds) through CTest;
#   2. the suite again under AddressSanitizer + UndefinedBehaviorSanitizer,
#      built with fault injection, so the crash-point and disk-full tests run
#      too (chaos and abuse excluded: they ran in step 1, and are about timing);
#   3. the scheduler, runner, event bus and HTTP tests under ThreadSanitizer;
#   4. each libFuzzer target (clang) for FUZZ_SECONDS (default 15) on its corpus.
# Any sanitizer report or fuzzer crash fails the run.
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
  -DCRONKEEP_FAULT_INJECTION=ON -DCRONKEEP_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$jobs" > build-asan/build.log 2>&1 || { tail -40 build-asan/build.log; exit 1; }
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j 2 --timeout 300 -E "chaos|abuse"

echo "== scheduler, runner, bus and HTTP tests under ThreadSanitizer"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRONKEEP_SANITIZE=thread \
  -DCRONKEEP_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan -j "$jobs" --target cronkeep_tests > build-tsan/build.log 2>&1 ||
  { tail -40 build-tsan/build.log; exit 1; }
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  build-tsan/tests/cronkeep_tests --gtest_filter='SchedulerTest.*:Runner.*:Bus.*:HttpTest.*' --gtest_brief=1
echo "== fuzzers"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DCRONKEEP_FUZZ=ON -DCRONKEEP_BUILD_TESTS=OFF -DCRONKEEP_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j "$jobs" > build-fuzz/build.log 2>&1 || { tail -40 build-fuzz/build.log; exit 1; }
for target in cron units config http; do
  mkdir -p "build-fuzz/corpus-$target"
  build-fuzz/fuzz/fuzz_$target -max_total_time="${FUZZ_SECONDS:-15}" -print_final_stats=1 \
    -artifact_prefix="build-fuzz/" "build-fuzz/corpus-$target" "fuzz/corpus/$target" > "build-fuzz/fuzz-$target.log" 2>&1 ||
    { tail -30 "build-fuzz/fuzz-$target.log"; echo "fuzz_$target found a crash (input in build-fuzz/)"; exit 1; }
  echo "fuzz_$target: $(grep -o 'number_of_executed_units: [0-9]*' "build-fuzz/fuzz-$target.log" | cut -d' ' -f2) executions, no crash"
done
echo "test.sh: every stage passed (tests, ASan+UBSan with fault injection, TSan, fuzzers)"
