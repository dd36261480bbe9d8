#!/usr/bin/env bash
# SQLite against PostgreSQL with one and with three coordinator replicas, same run, same machine:
#   1. the store: durable two-platform builds per second (LANES pairs of agents at once) and lease latency,
#      in process (`manifold-bench --store-only`);
#   2. dispatch over the real protocol: real `manifold serve` processes (TLS), AGENTS simulated agents holding
#      long polls, builds submitted one after another; latency from the submit request to the lease in an
#      agent's hands (`manifold-bench --dispatch`). Three replicas sit behind HAProxy (TCP, round robin).
# PostgreSQL runs with fsync and synchronous_commit on, SQLite with synchronous = FULL: every acknowledged
# commit is on disk on both sides.
#   Usage: deploy/bench/replicas.sh [BUILDS (default 300)] [AGENTS (default 100)] [LANES (default 8)]
# Each dispatch run also prints every coordinator's peak resident memory (VmHWM) with AGENTS polls held: run it with
# AGENTS 1000 and 2000 for the figures at scale.
# As root on Debian 12 with postgresql and haproxy (deploy/testenv/install-deps.sh installs them).
# MANIFOLD_BIN_DIR names a directory holding already built `manifold`, `manifold-coordinator` and `manifold-bench` (figures need release).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$(dirname "$here")")"
cd "$root"
builds="${1:-300}"
agents="${2:-100}"
lanes="${3:-8}"

# shellcheck source=../testenv/binaries.sh
. "$root/deploy/testenv/binaries.sh"
build_products release manifold manifold-coordinator manifold-bench
manifold="$bin_dir/manifold"
bench="$bin_dir/manifold-bench"

# shellcheck source=../testenv/postgres-env.sh
. "$root/deploy/testenv/postgres-env.sh"
work="$(mktemp -d /tmp/manifold-bench-replicas.XXXXXX)"
chmod 711 "$work"
pids=()
serve_pids=()
stop_servers() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_servers
    postgres_stop
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
postgres_start "$work/pg"
echo "PostgreSQL $(postgres_psql postgres -qAtc 'SHOW server_version'): fsync $(postgres_psql postgres -qAtc 'SHOW fsync'), synchronous_commit $(postgres_psql postgres -qAtc 'SHOW synchronous_commit')"

echo "== the store, in process"
# A failure here (PostgreSQL giving up on a transaction after its serialization retries) is a finding to report,
# not a reason to skip the dispatch figures.
MANIFOLD_DATABASE_PASSWORD="$(cat "$PG_PASSWORD_FILE")" "$bench" --store-only --builds "$builds" --lanes "$lanes" \
    --postgres "$(postgres_create_database store)" || echo "the store benchmark failed (exit $?)"

# `manifold init` for a setup; prints the admin token (kept in a file, never on a command line).
initialise() {
    local name="$1" listen="$2"
    shift 2
    "$manifold" init --state-dir "$work/$name" --listen "$listen" --allow-registry registry.bench.invalid "$@" \
        >"$work/$name.init"
    grep -A1 '^Admin token' "$work/$name.init" | tail -n 1 | tr -d ' ' >"$work/$name.token"
    chmod 600 "$work/$name.token"
}
serve() {
    local name="$1" port="$2"
    "$manifold" serve --state-dir "$work/$name" --listen "127.0.0.1:$port" >>"$work/$name-$port.log" 2>&1 &
    pids+=($!)
    serve_pids+=($!)
    for _ in $(seq 1 200); do
        curl -fsS --cacert "$work/$name/pki/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "manifold serve on $port did not become ready:" >&2
    tail -n 20 "$work/$name-$port.log" >&2
    return 1
}
dispatch() {
    local name="$1" url="$2" label="$3"
    printf '%-24s ' "$label"
    MANIFOLD_BENCH_TOKEN="$(cat "$work/$name.token")" "$bench" --dispatch "$url" --ca "$work/$name/pki/ca.crt" \
        --agents "$agents" --builds "$builds"
    # Each coordinator's peak and current resident memory, with every agent's poll still held at the end.
    local pid
    for pid in "${serve_pids[@]}"; do
        printf '%-24s coordinator pid %s: peak RSS %s, RSS %s\n' "" "$pid" \
            "$(awk '/^VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status")" \
            "$(awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status")"
    done
    serve_pids=()
}

echo "== dispatch over HTTPS, $agents idle agents"
port="$(free_port)"
initialise sqlite "127.0.0.1:$port"
serve sqlite "$port"
dispatch sqlite "https://127.0.0.1:$port" "SQLite"
stop_servers

# `manifold init --database` on a database of its own.
initialise_postgres() {
    initialise "$1" "$2" --database "$(postgres_create_database "$1")" --database-password-file "$PG_PASSWORD_FILE"
}
port="$(free_port)"
initialise_postgres pg1 "127.0.0.1:$port"
serve pg1 "$port"
dispatch pg1 "https://127.0.0.1:$port" "PostgreSQL, 1 replica"
stop_servers

proxy_port="$(free_port)"
initialise_postgres pg3 "127.0.0.1:$proxy_port"
replica_ports=("$(free_port)" "$(free_port)" "$(free_port)")
for replica in "${replica_ports[@]}"; do serve pg3 "$replica"; done
cat >"$work/haproxy.cfg" <<CONFIG
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 10m
    timeout server 10m
frontend coordinators
    bind 127.0.0.1:$proxy_port
    default_backend replicas
backend replicas
    balance roundrobin
    server replica1 127.0.0.1:${replica_ports[0]} check inter 500ms
    server replica2 127.0.0.1:${replica_ports[1]} check inter 500ms
    server replica3 127.0.0.1:${replica_ports[2]} check inter 500ms
CONFIG
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
sleep 1.5  # one health check marks every replica up
dispatch pg3 "https://127.0.0.1:$proxy_port" "PostgreSQL, 3 replicas"
stop_servers
