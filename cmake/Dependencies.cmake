# Every dependency comes from Debian's packages (scripts/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(date REQUIRED)
find_package(tl-expected REQUIRED)
# OpenSSL: https:// and HMAC-SHA256, in the TLS module only (cronkeep-tls.so).
find_package(OpenSSL REQUIRED)
# cpp-httplib: a client and a receiver for tests and benchmarks only; the
# binary's HTTP client is Boost.Beast (src/net).
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
# The HTTP server: Boost.Beast and Asio, header-only (Debian's libboost-dev);
# zlib for gzip answers. Linked by cronkeep_http only.
find_package(Boost 1.74 REQUIRED)
find_package(ZLIB REQUIRED)
# PostgreSQL backend (Debian's libpqxx-dev, 6.4); linked by cronkeep_store only.
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
# zstd for the archive of purged runs (Debian's libzstd-dev); linked by cronkeep_archive only.
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
# sd_notify (READY, STATUS, WATCHDOG…) for Type=notify units: its header for
# cronkeep_daemon, which opens libsystemd.so.0 only when NOTIFY_SOCKET is set.
pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
if(CRONKEEP_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(CRONKEEP_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
