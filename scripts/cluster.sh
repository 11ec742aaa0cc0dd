#!/usr/bin/env bash
# A throwaway PostgreSQL cluster owned by the postgres OS user.
#   cluster.sh start DIR PORT [extra postgresql.conf lines...]
#   cluster.sh stop DIR
# The socket lives in DIR/sock; connect with host=DIR/sock port=PORT user=postgres.
set -euo pipefail
source "$(dirname "$0")/env.sh"

cmd=$1 dir=$2
case "$cmd" in
start)
    port=$3; shift 3
    $SUDO rm -rf "$dir"
    $SUDO mkdir -p "$dir/sock"
    $SUDO chown -R postgres:postgres "$dir"
    $SUDO chmod 755 "$dir" "$dir/sock"
    as_postgres "$PG_BIN/initdb" -D "$dir/data" --auth=trust -U postgres --no-sync \
        -E UTF8 --locale=C.UTF-8 >/dev/null
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$dir/sock'"
        echo "fsync = off"
        echo "shared_buffers = 128MB"
        echo "max_connections = 100"
        echo "max_prepared_transactions = 10"
        for line in "$@"; do echo "$line"; done
    } | as_postgres tee -a "$dir/data/postgresql.conf" >/dev/null
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
    ;;
stop)
    # The data directory is postgres-only (0700): look inside as postgres.
    if as_postgres test -f "$dir/data/postmaster.pid"; then
        as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    ;;
*)
    echo "usage: cluster.sh start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
