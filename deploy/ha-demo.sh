#!/usr/bin/env bash
# Manifold with replicas, end to end on this machine (Debian 12, as root):
#   1. installs what it needs (PostgreSQL, HAProxy, docker-registry, buildah) and builds `manifold` and `manifold-agent`
#      (debug unless MANIFOLD_DEMO_BUILD=release: a demo measures nothing);
#   2. starts a PostgreSQL cluster and docker-registry (TLS + basic auth) on loopback;
#   3. `manifold init --database` once, then three `manifold serve` replicas sharing that state directory and the
#      database, behind HAProxy (TCP, health-checked);
#   4. joins three agents through HAProxy (linux/amd64, linux/arm64, windows/amd64; buildah, vfs, chroot);
#   5. submits the sample build and watches it; while the build runs, finds the replica serving the watch's event
#      stream (HAProxy's runtime API names it) and kills it with SIGKILL. The watch reconnects to another replica
#      and the build publishes; skopeo checks the stored list.
# Everything it starts is stopped on exit, also on Ctrl-C. Set KEEP=1 to keep the work directory and logs.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"
# shellcheck source=testenv/postgres-env.sh
. "$here/testenv/postgres-env.sh"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
# shellcheck source=testenv/binaries.sh
. "$here/testenv/binaries.sh"

step "Installing system packages (skipped when present)"
bash "$here/testenv/install-deps.sh"

configuration="${MANIFOLD_DEMO_BUILD:-debug}"
step "Building manifold, manifold-coordinator and manifold-agent ($configuration)"
build_products "$configuration" manifold manifold-coordinator manifold-agent
manifold="$bin_dir/manifold"
agent="$bin_dir/manifold-agent"

work="$(mktemp -d /tmp/manifold-ha.XXXXXX)"
chmod 711 "$work"  # the postgres user reaches its cluster directory inside
pids=()
replica_pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}" "${replica_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}" "${replica_pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    postgres_stop
    "$here/testenv/registry-env.sh" stop "$work/registry" >/dev/null 2>&1 || true
    if [ "$status" != 0 ]; then
        echo "ha demo failed (exit $status); logs:" >&2
        for log in "$work"/logs/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }; done
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/logs"
export XDG_CONFIG_HOME="$work/config"

postgres_start "$work/pg"
step "Started PostgreSQL on 127.0.0.1:$PG_PORT"
database="$(postgres_create_database manifold)"

registry_port="$(free_port)"
registry="127.0.0.1:$registry_port"
username=demo
password="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
step "Starting docker-registry on https://$registry (TLS + basic auth)"
mkdir -p "$work/registry" "$work/certs"
USERNAME="$username" PASSWORD="$password" "$here/testenv/registry-env.sh" start "$work/registry" basic "$registry_port" \
    >/dev/null
ca="$work/registry/ca.crt"
cp "$ca" "$work/certs/ca.crt"
printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$registry" "$(printf '%s:%s' "$username" "$password" | base64 -w0)" \
    >"$work/registry-auth.json"
chmod 600 "$work/registry-auth.json"

proxy_port="$(free_port)"
coordinator="https://127.0.0.1:$proxy_port"
step "manifold init --database (once, for every replica)"
"$manifold" init --state-dir "$work/coordinator" --listen "127.0.0.1:$proxy_port" --allow-registry "$registry" \
    --database "$database" --database-password-file "$PG_PASSWORD_FILE" | tee "$work/init.txt"
value_after() { grep -A1 "^$1" "$work/init.txt" | tail -n 1 | tr -d ' '; }
fingerprint="$(value_after 'CA fingerprint')"
join_token="$(value_after 'Agent join token')"
printf '%s\n' "$password" | "$manifold" registry login "$registry" --state-dir "$work/coordinator" \
    --username "$username" --password-stdin --registry-ca "$registry=$ca"

replica_ports=("$(free_port)" "$(free_port)" "$(free_port)")
start_replica() {
    local index="$1"
    MANIFOLD_REGISTRY_CAS="$registry=$ca" "$manifold" serve --state-dir "$work/coordinator" \
        --listen "127.0.0.1:${replica_ports[$index]}" >>"$work/logs/replica-$((index + 1)).log" 2>&1 &
    replica_pids[$index]=$!
}
step "Starting three replicas on ports ${replica_ports[*]} (one database, one state directory)"
for index in 0 1 2; do start_replica "$index"; done
for index in 0 1 2; do
    for _ in $(seq 1 100); do
        curl -fsS --cacert "$work/coordinator/pki/ca.crt" "https://127.0.0.1:${replica_ports[$index]}/readyz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fsS --cacert "$work/coordinator/pki/ca.crt" "https://127.0.0.1:${replica_ports[$index]}/readyz" >/dev/null
done

step "Starting HAProxy on $coordinator in front of them"
cat >"$work/haproxy.cfg" <<CONFIG
global
    maxconn 4096
    stats socket $work/haproxy.sock mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 10m
    timeout server 10m
    retries 3
    option redispatch
frontend coordinators
    bind 127.0.0.1:$proxy_port
    default_backend replicas
backend replicas
    balance roundrobin
    server replica1 127.0.0.1:${replica_ports[0]} check inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions
    server replica2 127.0.0.1:${replica_ports[1]} check inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions
    server replica3 127.0.0.1:${replica_ports[2]} check inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions
CONFIG
haproxy -db -f "$work/haproxy.cfg" >"$work/logs/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do curl -fsS --cacert "$work/coordinator/pki/ca.crt" "$coordinator/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

step "Joining and starting three agents through HAProxy"
start_agent() {
    local name="$1" platform="$2" state="$work/agents/$1"
    "$agent" join "$coordinator" --token-file - --ca-fingerprint "$fingerprint" --state-dir "$state" \
        --name "$name" --platform "$platform" <<<"$join_token" >"$work/logs/$name-join.log"
    "$agent" run --state-dir "$state" --platform "$platform" --builder buildah \
        --global-arg="--root=$state/storage" --global-arg="--runroot=$state/run" --global-arg=--storage-driver=vfs \
        --builder-arg=--isolation=chroot --push-arg="--cert-dir=$work/certs" \
        --push-arg="--authfile=$work/registry-auth.json" >"$work/logs/$name.log" 2>&1 &
    pids+=($!)
    echo "  $name offers $platform"
}
start_agent ha-linux-amd64 linux/amd64
start_agent ha-linux-arm64 linux/arm64
start_agent ha-windows-ltsc2022 windows/amd64:10.0.20348.2227
sleep 1

# `manifold init` stored an admin context pointing at the proxy's address.
step "manifold build submit … --watch, killing the replica that serves the watch"
"$manifold" build submit "$registry/demo/hello" --tag 1.0 --tag latest \
    --platform linux/amd64 --platform linux/arm64 --platform windows/amd64:10.0.20348 \
    --context "$here/sample" --file Containerfile --watch >"$work/watch.txt" 2>&1 &
watch_pid=$!
# The watch's connection to HAProxy, and the replica HAProxy gave it (its runtime API lists every session).
victim=""
for _ in $(seq 1 100); do
    port="$( (ss -tnpH state established "( dport = :$proxy_port )" | grep "pid=$watch_pid," || true) | awk '{print $3}' | sed 's/.*://' | tail -n 1)"
    if [ -n "$port" ]; then
        victim="$(python3 - "$work/haproxy.sock" "$port" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show sess\n")
data = b""
while chunk := s.recv(65536): data += chunk
for line in data.decode().splitlines():
    fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
    if fields.get("src") == f"127.0.0.1:{sys.argv[2]}" and fields.get("srv", "").startswith("replica"):
        print(fields["srv"][len("replica"):]); break
PY
)"
        [ -n "$victim" ] && break
    fi
    sleep 0.1
done
[ -n "$victim" ] || { echo "could not find the replica serving the watch" >&2; exit 1; }
sleep 2  # the build is under way
echo "  the watch is served by replica $victim; kill -9 ${replica_pids[$((victim - 1))]}"
kill -KILL "${replica_pids[$((victim - 1))]}"
wait "$watch_pid"
cat "$work/watch.txt"
grep -q "published" "$work/watch.txt"

step "Checking with skopeo that the registry returns the published list"
skopeo inspect --raw --cert-dir "$work/certs" --creds "$username:$password" "docker://$registry/demo/hello:1.0" \
    | python3 -c 'import json, sys; m = json.load(sys.stdin); print("  " + ", ".join(d["platform"]["os"] + "/" + d["platform"]["architecture"] for d in m["manifests"]))'

step "Done: the build published while the replica serving its watch was killed"
