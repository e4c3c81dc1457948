#!/usr/bin/env bash
# Same contract as the official postgres image's entrypoint, as far as the stack uses it: flags
# become `postgres ...`; as root, PGDATA is made and handed to the postgres user and this script
# runs again as that user; an empty PGDATA is initialised (POSTGRES_PASSWORD required, like the
# official image, which refuses an uninitialised database without it), a non-empty one is started as
# it is; the server replaces this script (PID 1, SIGINT is its fast shutdown).
set -Eeuo pipefail
if [ "${1:0:1}" = - ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export POSTGRES_USER POSTGRES_DB

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 00700 "$PGDATA"
  chmod 03775 /var/run/postgresql
  find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
  find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the superuser.
       For example, "-e POSTGRES_PASSWORD=password" on "docker run".
MSG
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 00700 "$PGDATA"
  # the password reaches initdb in a file only this user can read, removed at once
  pwdir=$(mktemp -d)
  trap 'rm -rf "$pwdir"' EXIT
  (umask 077 && printf '%s\n' "$POSTGRES_PASSWORD" >"$pwdir/pwfile")
  initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwdir/pwfile" \
    --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8
  rm -rf "$pwdir"
  trap - EXIT
  printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # a server on the socket only, for CREATE DATABASE (owned by POSTGRES_USER, initdb's superuser)
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
    psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
      --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    pg_ctl -D "$PGDATA" -m fast -w stop
  fi
  echo 'PostgreSQL init process complete; ready for start up.'
else
  echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
fi
exec "$@"
