#!/usr/bin/env bash
# Installs every Debian package cronkeep needs to build, test and benchmark,
# then builds it into ./build. Safe to run again. Needs root (or sudo) for apt.
#
#   scripts/setup.sh            install packages, configure, build
#   CRONKEEP_WERROR=ON ...      treat warnings as errors (CI does)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates tzdata
  libsqlite3-dev sqlite3 libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libcpp-httplib-dev
  libspdlog-dev libfmt-dev libexpected-dev libhowardhinnant-date-dev
  # the archive of purged runs ([retention] archive): zstd frames
  libzstd-dev
  # the HTTP server: Boost.Beast and Asio (header-only); zlib for gzip answers
  libboost-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # the PostgreSQL backend (libpqxx) and a server for its tests (tests/with_pg.sh)
  libpqxx-dev postgresql
  # notifications (HMAC) and systemd
  libssl-dev libsystemd-dev systemd
  curl procps python3
  # steps of the wall clock under a real daemon (tests/clock_step.sh)
  faketime
  # the web UI's browser tests: Debian's chromium, driven by playwright-core from npm
  chromium
  # fuzzers: libFuzzer comes with clang's runtime
  clang libclang-rt-14-dev
  # peers and load tools for the benchmarks under bench/
  s6 runit daemontools wrk hyperfine
)

# Node and npm for the browser tests, from Debian unless some node is there already.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# playwright-core for the browser tests, exactly as locked (no browser download:
# the tests use /usr/bin/chromium), and uplot, whose built file ui/assets
# vendors (tests/ui.sh checks that they match).
(cd ui/tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

# Options are passed only when set, so running setup after test.sh (or the
# other way round) does not flip the cache and rebuild everything.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" \
  ${CRONKEEP_WERROR:+-DCRONKEEP_WERROR=$CRONKEEP_WERROR} -DCRONKEEP_BUILD_BENCH="${CRONKEEP_BUILD_BENCH:-ON}" >/dev/null
cmake --build build -j "$(nproc)"
echo "setup: built build/cronkeep"
