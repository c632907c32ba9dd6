#!/usr/bin/env bash
# A throwaway PostgreSQL for tests/test_db.py, on loopback, in a folder of its own.
#
#   .ci/postgres.sh start DIR   install the server if missing (Debian's package), start a cluster
#                               in DIR and print its URL (postgresql+psycopg://...) on stdout;
#                               exits non-zero with a warning when no server can be had
#   .ci/postgres.sh stop DIR    stop that cluster and delete DIR (safe when start failed)
#
# As root the server runs as the `postgres` user (initdb refuses root). Trust authentication,
# fsync off: the cluster lives for one CI run and holds nothing worth a password or a disk sync.
set -euo pipefail

as_owner() {  # run a server command as the user that owns the cluster
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

server_bin() {  # the installed server's bin folder (the last version), empty if none
    local bin found=
    for bin in /usr/lib/postgresql/*/bin; do
        if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ]; then found=$bin; fi
    done
    echo "$found"
}

install_server() {
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo -n)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends postgresql
}

start() {
    local dir=$1 bin port
    bin=$(server_bin)
    if [ -z "$bin" ]; then
        install_server >&2 || true
        bin=$(server_bin)
    fi
    [ -n "$bin" ] || { echo "apt-get install postgresql failed" >&2; return 1; }
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$dir"
    [ "$(id -u)" != 0 ] || chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U apmae --auth=trust -E UTF8 --no-sync >/dev/null
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null \
        || { tail -n 20 "$dir/server.log" >&2; return 1; }
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U apmae apmae_test
    echo "$("$bin/postgres" --version) on 127.0.0.1:$port, database apmae_test" >&2
    echo "postgresql+psycopg://apmae@127.0.0.1:$port/apmae_test"
}

stop() {
    local dir=$1 bin
    bin=$(server_bin)
    if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
}

case "${1:-} ${2:-}" in
    "start "?*)
        trap '[ $? = 0 ] || echo "WARNING: no PostgreSQL for the tests (see above);" \
            "tests/test_db.py runs on SQLite only" >&2' EXIT
        start "$2" ;;
    "stop "?*) stop "$2" ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
