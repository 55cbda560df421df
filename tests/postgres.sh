#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster on 127.0.0.1, then
# stops and deletes the cluster whatever the command's outcome.
#
#   tests/postgres.sh cargo test --release -p component-tests
#
# Exports TEST_DATABASE_URL (a superuser URL: the tests make one database
# each) and TEST_PG_CTL (pg_ctl for this cluster, for the outage test).
# TEST_PG_FSYNC=on makes commits durable (the bench); tests run without.
set -euo pipefail
# The default port lies below Linux's ephemeral range (32768-60999): a port in
# it can be taken by any test's outgoing connection or port-0 listener, which
# made the server's start fail in a CI run. A start that fails anyway is
# retried on a port the kernel says is free, and its log is shown.
port=${TEST_PG_PORT:-25432}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ]; then
  if [ "${CI:-}" = true ]; then
    echo "PostgreSQL server binaries are missing (apt-get install postgresql)" >&2
    exit 1
  fi
  "$(dirname "$0")/../tools/skipped.sh" "the PostgreSQL suite (no server binaries here: apt-get install postgresql)"
  exit 0
fi
data=$(mktemp -d /tmp/orders-api-pg.XXXXXX)
as_owner=()
if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root: the cluster belongs to the postgres user.
  chown postgres: "$data"
  as_owner=(runuser -u postgres --)
fi
cleanup() {
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT
"${as_owner[@]}" "$bindir/initdb" -D "$data" -U postgres -A trust --no-sync >/dev/null
cat >>"$data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
fsync = ${TEST_PG_FSYNC:-off}
max_connections = 200
CONF
start() {
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w start >/dev/null
}
for attempt in 1 2 3; do
  if start; then break; fi
  echo "tests/postgres.sh: PostgreSQL did not start on port $port (attempt $attempt); its log:" >&2
  tail -n 20 "$data/server.log" >&2 || true
  [ "$attempt" = 3 ] && exit 1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  echo "port = $port" >>"$data/postgresql.conf" # the last setting wins
done
echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($data)"
export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
export TEST_PG_CTL="${as_owner[*]} $bindir/pg_ctl -D $data -l $data/server.log -w"
"$@"
