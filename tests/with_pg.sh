#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster up, then removes it.
#
#   tests/with_pg.sh CMD [ARGS...]
#
# initdb's a cluster into a fresh temporary directory, starts it with pg_ctl
# listening only on a Unix socket in that directory (no TCP; fsync and
# synchronous_commit off: the data is thrown away), creates the database
# cronkeep_test, and runs CMD with
#   CRONKEEP_TEST_PG_URL=postgresql:///cronkeep_test?host=DIR&user=postgres
# exported. The cluster is stopped (pg_ctl -m immediate) and the directory
# removed when CMD ends, whatever its outcome, and on SIGINT/SIGTERM. Exits
# with CMD's status. Server binaries: $PG_BIN, else /usr/lib/postgresql/*/bin
# (Debian's postgresql package). initdb refuses to run as root, so as root
# the server runs as the postgres user, which owns the directory.
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

bin=${PG_BIN:-}
if [ -z "$bin" ]; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
fi
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "with_pg: no PostgreSQL server binaries (install Debian's postgresql package, or set PG_BIN)" >&2
  exit 1
fi

as_pg=()
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi

dir=$(mktemp -d /tmp/ck-pg-XXXXXX)
cleanup() {
  local rc=$?
  if [ -f "$dir/data/postmaster.pid" ]; then
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

chmod 755 "$dir"
[ ${#as_pg[@]} -eq 0 ] || chown postgres: "$dir"

"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log" >&2; exit 1; }
# In the cluster's own configuration, so that a test may stop and start it
# again (tests/pg_outage.sh) with the same settings.
cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null ||
  { cat "$dir/server.log" >&2; exit 1; }
"${as_pg[@]}" "$bin/createdb" -h "$dir" -U postgres cronkeep_test

export CRONKEEP_TEST_PG_URL="postgresql:///cronkeep_test?host=$dir&user=postgres"
export CRONKEEP_TEST_PG_DIR="$dir"  # the cluster is $dir/data, its log $dir/server.log
set +e
"$@"
rc=$?
set -e
exit "$rc"
