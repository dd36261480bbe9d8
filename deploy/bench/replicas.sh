#!/usr/bin/env bash
# Durable completions per second and lease latency of the coordinator's store: SQLite (synchronous=FULL, as the
# coordinator runs) against PostgreSQL with one and with three replicas driving builds at once, same run, same
# machine. PostgreSQL runs with its defaults (fsync=on, synchronous_commit=on), so every acknowledged commit is on
# disk on both sides. Usage: deploy/bench/store-backends.sh [BUILDS]   (as root; Debian 12 with postgresql)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$(dirname "$here")")"
cd "$root"
builds="${1:-300}"

# MANIFOLD_BENCH names an already built binary (a smoke run with a debug build, say); figures need release.
bench="${MANIFOLD_BENCH:-}"
if [ -z "$bench" ]; then
    swift build -c release --product manifold-bench
    bench="$(swift build -c release --show-bin-path)/manifold-bench"
fi
pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
work="$(mktemp -d /tmp/manifold-bench-pg.XXXXXX)"
chmod 711 "$work"
cleanup() {
    [ -d "$work/pg/data" ] && runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
install -d -o postgres -m 700 "$work/pg"
password="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
printf '%s\n' "$password" | install -o postgres -m 600 /dev/stdin "$work/pg/pwfile"
runuser -u postgres -- "$pg_bin/initdb" -D "$work/pg/data" -U manifold --pwfile="$work/pg/pwfile" \
    --auth=scram-sha-256 >/dev/null
# Started in the background, not with `pg_ctl start` (whose server keeps the caller's output open).
runuser -u postgres -- "$pg_bin/postgres" -D "$work/pg/data" -p "$port" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$work/pg" -c max_connections=100 >"$work/pg/server.log" 2>&1 &
for _ in $(seq 1 100); do
    PGPASSWORD="$password" psql "postgres://manifold@127.0.0.1:$port/postgres" -qAtc 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.1
done
PGPASSWORD="$password" psql "postgres://manifold@127.0.0.1:$port/postgres" -qc "CREATE DATABASE bench"
echo "fsync: $(PGPASSWORD="$password" psql "postgres://manifold@127.0.0.1:$port/bench" -qAtc 'SHOW fsync'), synchronous_commit: $(PGPASSWORD="$password" psql "postgres://manifold@127.0.0.1:$port/bench" -qAtc 'SHOW synchronous_commit')"
MANIFOLD_DATABASE_PASSWORD="$password" "$bench" --store-only --builds "$builds" \
    --postgres "postgres://manifold@127.0.0.1:$port/bench?sslmode=disable"
