#!/usr/bin/env bash
# Throughput over the real protocol with a real registry: a SQLite coordinator (TLS) and docker-registry (TLS, basic
# auth) on loopback, AGENTS instant agents simulated by `manifold-bench --throughput` (each lease is one manifest PUT
# of a pre-pushed image under the attempt's tag, then the report), BUILDS two-platform builds kept WINDOW in flight.
# Prints builds published and completions accepted per second, submit→published p50/p99, the registry PUTs' share
# of the agents' lease time, and the coordinator's peak resident memory (VmHWM). Two runs, each on a fresh
# coordinator: AGENTS alone, then AGENTS beside IDLE agents holding polls for a platform no build asks for.
#   Usage: deploy/bench/throughput.sh [BUILDS (default 1000)] [AGENTS (default 20)] [IDLE (default 2000)] [WINDOW (default 50)]
# A WINDOW below what the registry sustains (a few builds) measures a build's latency without a queue in front of it.
# Needs docker-registry, openssl, curl and python3 (deploy/testenv/install-deps.sh installs them).
# MANIFOLD_BIN_DIR names a directory holding already built `manifold`, `manifold-coordinator` and `manifold-bench` (figures need release).
# MANIFOLD_BENCH_SETTINGS holds manifold.yaml lines (`key: value`, one per line) that replace the coordinator's defaults,
# e.g. MANIFOLD_BENCH_SETTINGS='registry_concurrency: 16' to compare a setting run by run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$(dirname "$here")")"
cd "$root"
builds="${1:-1000}"
agents="${2:-20}"
idle="${3:-2000}"
window="${4:-50}"

# shellcheck source=../testenv/binaries.sh
. "$root/deploy/testenv/binaries.sh"
build_products release manifold manifold-coordinator manifold-bench
manifold="$bin_dir/manifold"
bench="$bin_dir/manifold-bench"
# Every held poll is a connection on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work="$(mktemp -d /tmp/manifold-bench-throughput.XXXXXX)"
pids=()
stop_coordinator() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_coordinator
    "$root/deploy/testenv/registry-env.sh" stop "$work/registry" >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/registry"
export XDG_CONFIG_HOME="$work/config"

registry_port="$(free_port)"
registry="127.0.0.1:$registry_port"
password="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
# The access log counts the registry requests each build makes.
ACCESS_LOG=1 USERNAME=bench PASSWORD="$password" "$root/deploy/testenv/registry-env.sh" start "$work/registry" basic "$registry_port" \
    >/dev/null
registry_ca="$work/registry/ca.crt"

# One run on a fresh coordinator (its own state directory, so its peak memory is this run's alone).
measure() {
    local name="$1" idle_agents="$2" port state line key
    port="$(free_port)"
    state="$work/$name"
    "$manifold" init --state-dir "$state" --listen "127.0.0.1:$port" --allow-registry "$registry" >"$state.init"
    grep -A1 '^Admin token' "$state.init" | tail -n 1 | tr -d ' ' >"$state.token"
    chmod 600 "$state.token"
    if [ -n "${MANIFOLD_BENCH_SETTINGS:-}" ]; then
        while IFS= read -r line; do
            [ -n "$line" ] || continue
            key="${line%%:*}"
            grep -v "^$key:" "$state/manifold.yaml" >"$state/manifold.yaml.new" || true
            printf '%s\n' "$line" >>"$state/manifold.yaml.new"
            cat "$state/manifold.yaml.new" >"$state/manifold.yaml"
            rm "$state/manifold.yaml.new"
        done <<<"$MANIFOLD_BENCH_SETTINGS"
    fi
    printf '%s\n' "$password" | "$manifold" registry login "$registry" --state-dir "$state" \
        --username bench --password-stdin --registry-ca "$registry=$registry_ca" >/dev/null
    MANIFOLD_REGISTRY_CAS="$registry=$registry_ca" "$manifold" serve --state-dir "$state" >"$state.log" 2>&1 &
    pids+=($!)
    local coordinator_pid=$! ready=0
    for _ in $(seq 1 200); do
        if curl -fsS --cacert "$state/pki/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [ "$ready" != 1 ]; then
        echo "manifold serve did not become ready:" >&2
        tail -n 20 "$state.log" >&2
        return 1
    fi
    local logged
    logged="$(wc -l <"$work/registry/registry.log")"
    MANIFOLD_BENCH_TOKEN="$(cat "$state.token")" MANIFOLD_BENCH_REGISTRY_USER=bench \
        MANIFOLD_BENCH_REGISTRY_PASSWORD="$password" "$bench" --throughput "https://127.0.0.1:$port" \
        --ca "$state/pki/ca.crt" --registry "$registry" --registry-ca "$registry_ca" --agents "$agents" \
        --idle "$idle_agents" --builds "$builds" --window "$window"
    # Every request for the builds' repository (the probe has one of its own), agents' pushes included.
    tail -n "+$((logged + 1))" "$work/registry/registry.log" | awk -v builds="$builds" '
        /"(GET|HEAD|PUT|POST|PATCH|DELETE) \/v2\/bench\/throughput-/ { n++ }
        END { printf "  registry requests per build: %.1f (%d for %d builds, agents'"'"' pushes included)\n", n / builds, n, builds }'
    printf '  coordinator pid %s: peak RSS %s, RSS %s\n' "$coordinator_pid" \
        "$(awk '/^VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$coordinator_pid/status")" \
        "$(awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$coordinator_pid/status")"
    stop_coordinator
}

echo "== $agents instant agents, SQLite, registry $registry, $window builds in flight"
measure alone 0
if [ "$idle" -gt 0 ]; then
    echo "== $agents instant agents and $idle idle ones holding polls"
    measure held "$idle"
fi
