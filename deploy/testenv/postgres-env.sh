#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for demo and benchmark scripts (the Swift tests start their own
# through Tests/ManifoldTestSupport/TestPostgres.swift). Source it, then:
#
#   postgres_start DIR        # initdb as the postgres user into DIR/data, server on a free 127.0.0.1 port;
#                             # sets PG_PORT, PG_PASSWORD_FILE (0600, owned by the caller), PG_PID
#   postgres_create_database NAME   # prints the URL (no password: it is in PG_PASSWORD_FILE)
#   postgres_stop             # immediate shutdown (also safe when nothing was started)
#
# The server runs with its defaults (fsync on, synchronous_commit on) and password authentication
# (scram-sha-256) for the `manifold` superuser; DIR must be reachable by the postgres user (chmod 711).
# Needs root (initdb runs as `postgres`) and Debian's postgresql package.

postgres_start() {
    local dir="$1" bin
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    PG_DIR="$dir"
    install -d -o postgres -m 700 "$dir"
    PG_PASSWORD_FILE="$(dirname "$dir")/postgres-password"
    head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$PG_PASSWORD_FILE"
    chmod 600 "$PG_PASSWORD_FILE"
    install -o postgres -m 600 "$PG_PASSWORD_FILE" "$dir/pwfile"
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U manifold --pwfile="$dir/pwfile" \
        --auth=scram-sha-256 >"$dir/initdb.log"
    # Started as a child, not with `pg_ctl start` (whose server keeps the caller's output open).
    runuser -u postgres -- "$bin/postgres" -D "$dir/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
        -c unix_socket_directories="$dir" -c max_connections=200 >"$dir/server.log" 2>&1 &
    PG_PID=$!
    local _
    for _ in $(seq 1 100); do
        postgres_psql postgres -qAtc 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "PostgreSQL did not start; its log:" >&2
    cat "$dir/server.log" >&2
    return 1
}

postgres_psql() {
    local database="$1"
    shift
    PGPASSWORD="$(cat "$PG_PASSWORD_FILE")" psql "postgres://manifold@127.0.0.1:$PG_PORT/$database" "$@"
}

postgres_create_database() {
    postgres_psql postgres -qc "CREATE DATABASE $1" >/dev/null
    echo "postgres://manifold@127.0.0.1:$PG_PORT/$1?sslmode=disable"
}

postgres_stop() {
    [ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/data/postmaster.pid" ] &&
        kill -QUIT "$(head -n 1 "$PG_DIR/data/postmaster.pid")" 2>/dev/null
    return 0
}
