#!/usr/bin/env bash
# The shared-store tests (`pytest -m lake`) on DuckLake stores catalogued in a PostgreSQL
# server started here for them: Debian's package, run as user postgres on 127.0.0.1 in a
# temporary folder, stopped and removed afterwards. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pgbin)" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's postgresql for the shared-store tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
  else
    echo "PostgreSQL is missing: install Debian's 'postgresql' package" >&2
    exit 1
  fi
fi
PGBIN="$(pgbin)"
DIR="$(mktemp -d /tmp/detector-pg.XXXXXX)"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_postgres() {  # initdb refuses to run as root: the server runs as user postgres
  if [ "$(id -u)" = "0" ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
[ "$(id -u)" = "0" ] && chown postgres "$DIR"
as_postgres "'$PGBIN/initdb' -D '$DIR/data' -A trust -U postgres" >/dev/null
# fsync off: a test server, thrown away afterwards (never for a real catalog)
as_postgres "'$PGBIN/pg_ctl' -D '$DIR/data' -l '$DIR/log' -w start -o \
  '-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off'" >/dev/null
stop() {
  as_postgres "'$PGBIN/pg_ctl' -D '$DIR/data' -m fast -w stop" >/dev/null || true
  rm -rf "$DIR"
}
trap stop EXIT
DETECTOR_TEST_STORE=lake DETECTOR_TEST_PG="host=127.0.0.1 port=$PORT user=postgres" \
  .venv/bin/python -m pytest -m lake "$@"
