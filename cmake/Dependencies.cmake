# Every dependency comes from Debian's packages (scripts/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(SQLite3 REQUIRED)
# SQLite from its static archive (libsqlite3-dev ships it), for the same
# reason as spdlog below: compiled in, the daemon holds only the SQLite it
# uses. A Debian security update of SQLite then needs a rebuild of cronkeep.
find_library(CRONKEEP_SQLITE3_ARCHIVE NAMES libsqlite3.a REQUIRED)
set_target_properties(SQLite::SQLite3 PROPERTIES IMPORTED_LOCATION ${CRONKEEP_SQLITE3_ARCHIVE}
                      INTERFACE_LINK_LIBRARIES "m;${CMAKE_DL_LIBS};Threads::Threads")
find_package(tomlplusplus REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(date REQUIRED)
# spdlog, fmt and toml++ are compiled into the binary, in the header-only
# forms their Debian packages also ship, rather than loaded as shared
# libraries: a shared library costs the daemon its symbol tables and the
# pages around every function it touches (spdlog's, bound at load, alone
# held 500 kB of the idle daemon's memory); compiled in, only what is used
# is there (docs/benchmarks.md, "The idle footprint: libraries compiled in").
add_library(cronkeep_spdlog INTERFACE)
target_link_libraries(cronkeep_spdlog INTERFACE fmt::fmt-header-only Threads::Threads)
target_compile_definitions(cronkeep_spdlog INTERFACE SPDLOG_FMT_EXTERNAL)
add_library(cronkeep_toml INTERFACE)
target_compile_definitions(cronkeep_toml INTERFACE TOML_HEADER_ONLY=1)
# toml++ 3.3 (Debian 12's) reaches a __builtin_unreachable() in
# is_non_ascii_horizontal_whitespace for some non-ASCII code points where it
# looks for whitespace (upstream issues #190 and #295; fixed upstream by
# returning false there, which is what the compiled code does:
# ConfigSyntax.NonAsciiCharactersAreForStringsAndCommentsOnly parses such a
# document). The configuration loader refuses non-ASCII characters outside
# strings and comments before toml++ sees them (config.cc); for the cases
# left (one after a multi-line string's line-ending backslash, one toml++
# reads while failing on a malformed value), UBSan's check of that builtin
# is off where toml++ is compiled, as it was when toml++ was a shared library.
if(CRONKEEP_SANITIZE OR CRONKEEP_FUZZ)
  target_compile_options(cronkeep_toml INTERFACE -fno-sanitize=unreachable)
endif()
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
