#!/bin/sh
# Redis: run the command given. PostgreSQL (the default): initialise the data folder once, with
# POSTGRES_USER (a superuser, password POSTGRES_PASSWORD) and POSTGRES_DB, in UTF-8 (SQL_ASCII would make
# psycopg return bytes), as the official image does.
set -eu
[ "${1:-postgres}" = postgres ] || exec "$@"
bin=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
data=${PGDATA:-/var/lib/postgresql/data}
mkdir -p "$data" /run/postgresql
chown postgres:postgres "$data" /run/postgresql
chmod 700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > "$pw"
  chown postgres "$pw"
  runuser -u postgres -- "$bin/initdb" -D "$data" -U "${POSTGRES_USER:=postgres}" --pwfile="$pw" \
    --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -w -o "-c listen_addresses=''" start >/dev/null
  if [ "${POSTGRES_DB:-$POSTGRES_USER}" != postgres ]; then
    runuser -u postgres -- "$bin/createdb" -U "$POSTGRES_USER" "${POSTGRES_DB:-$POSTGRES_USER}"
  fi
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -w stop >/dev/null
fi
exec runuser -u postgres -- "$bin/postgres" -D "$data" -c listen_addresses='*'
