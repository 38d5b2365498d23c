#!/usr/bin/env bash
# A throwaway PostgreSQL cluster as a plain process, from the binaries install-tools.sh unpacked.
#
#   scripts/postgres.sh start DIR PORT   # initdb into DIR if empty, start on 127.0.0.1:PORT;
#                                        # prints the URL of its `postgres` database
#   scripts/postgres.sh stop DIR         # fast shutdown
#   scripts/postgres.sh wipe DIR         # stop, and delete the cluster's data
#
# Local and trusting: it listens on loopback only, with trust authentication, for `make run` and
# the tests. PostgreSQL refuses to run as root; as root, the cluster runs as `nobody`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
PG_BIN="$TOOLS/postgres/usr/lib/postgresql/15/bin"

die() { printf 'postgres: %s\n' "$*" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=nobody --regid=nogroup --clear-groups env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "$@"
  else
    "$@"
  fi
}

cmd="${1:-}"; dir="${2:-}"
[ -n "$dir" ] || die "usage: $0 start DIR PORT | stop DIR | wipe DIR"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
# As root the cluster belongs to `nobody`, who may not be able to reach DIR (a clone under
# /root, say); the cluster then lives under the temporary directory, named after DIR.
home="$dir"
if [ "$(id -u)" = 0 ] && ! as_owner test -r "$dir"; then
  home="${TMPDIR:-/tmp}/kafka-microservices-postgres-$(printf '%s' "$dir" | sha256sum | cut -c1-16)"
  mkdir -p "$home"
fi
case "$cmd" in
  start)
    port="${3:-}"; [ -n "$port" ] || die "usage: $0 start DIR PORT"
    "$ROOT/scripts/install-tools.sh" postgres
    [ "$(id -u)" = 0 ] && chown nobody:nogroup "$home"
    if [ ! -f "$home/data/PG_VERSION" ]; then
      as_owner "$PG_BIN/initdb" -D "$home/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 || die "initdb failed; see $dir/initdb.log"
    fi
    as_owner "$PG_BIN/pg_ctl" -D "$home/data" -l "$home/postgres.log" -w -t 30 \
      -o "-p $port -k $home -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
      || die "the server did not start; see $home/postgres.log"
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop|wipe)
    if [ -f "$home/data/postmaster.pid" ]; then
      as_owner "$PG_BIN/pg_ctl" -D "$home/data" -m fast -w stop >/dev/null
    fi
    if [ "$cmd" = wipe ]; then rm -rf "$home/data"; fi
    ;;
  *) die "usage: $0 start DIR PORT | stop DIR | wipe DIR" ;;
esac
