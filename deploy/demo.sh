#!/usr/bin/env bash
# Manifold's main job, end to end on this machine (Debian 12, as root):
#   1. installs what it needs and builds `manifold` and `manifold-agent` (debug: a demo measures
#      nothing, and a first debug build takes about half the time of a release one; MANIFOLD_DEMO_BUILD=release
#      for release);
#   2. starts docker-registry on loopback with TLS and basic auth;
#   3. initialises and starts a coordinator, gives it the registry credentials;
#   4. joins and starts three agents, offering linux/amd64, linux/arm64 and windows/amd64, each building with
#      buildah (vfs storage, chroot isolation: fine for this throwaway demo as root, not for real hosts, which run
#      the agent rootless as agent/README.md "Privileges" explains);
#   5. submits the sample build in deploy/sample from the CLI and watches it live until the coordinator has
#      published the manifest list, then shows the list and checks the stored bytes with skopeo. Before that it
#      prints the web dashboard's URL and a viewer token to sign in with; on a terminal it waits for Enter before
#      submitting and before stopping, so the build can be watched in a browser (DEMO_WAIT=0: no pauses).
#
# One machine plays three build hosts here: the sample Containerfile only copies a file, so buildah can label
# the same content for any platform. Real deployments run one agent per native host (an arm64 machine, a
# Windows Server of each OS build), all pointing at one coordinator; see the README.
# Everything it starts is stopped on exit, also on Ctrl-C. Set KEEP=1 to keep the work directory and logs.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"

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

work="$(mktemp -d /tmp/manifold-demo.XXXXXX)"
pids=()
cleanup() {
    local status=$?
    # Agents first (a SIGTERM drains them), then the coordinator, then the registry.
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    "$here/testenv/registry-env.sh" stop "$work/registry" >/dev/null 2>&1 || true
    if [ "$status" != 0 ]; then
        echo "demo failed (exit $status); logs:" >&2
        for log in "$work"/logs/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }; done
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/logs"
# The CLI keeps its login in $XDG_CONFIG_HOME/manifold: use the demo's own, not the user's.
export XDG_CONFIG_HOME="$work/config"

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
# The agents' push credentials, in the containers auth.json format buildah reads.
printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$registry" "$(printf '%s:%s' "$username" "$password" | base64 -w0)" \
    >"$work/registry-auth.json"
chmod 600 "$work/registry-auth.json"

coordinator_port="$(free_port)"
coordinator="https://127.0.0.1:$coordinator_port"
step "Initialising a coordinator in $work/coordinator"
"$manifold" init --state-dir "$work/coordinator" --listen "127.0.0.1:$coordinator_port" --allow-registry "$registry" | tee "$work/init.txt"
value_after() { grep -A1 "^$1" "$work/init.txt" | tail -n 1 | tr -d ' '; }
fingerprint="$(value_after 'CA fingerprint')"
join_token="$(value_after 'Agent join token')"
printf '%s\n' "$password" | "$manifold" registry login "$registry" --state-dir "$work/coordinator" \
    --username "$username" --password-stdin --registry-ca "$registry=$ca"

step "Starting the coordinator on $coordinator"
MANIFOLD_REGISTRY_CAS="$registry=$ca" "$manifold" serve --state-dir "$work/coordinator" \
    >"$work/logs/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    curl -fsS --cacert "$work/coordinator/pki/ca.crt" "$coordinator/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS --cacert "$work/coordinator/pki/ca.crt" "$coordinator/readyz" >/dev/null

step "Joining and starting three agents (buildah, vfs storage, chroot isolation)"
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
start_agent demo-linux-amd64 linux/amd64
start_agent demo-linux-arm64 linux/arm64
start_agent demo-windows-ltsc2022 windows/amd64:10.0.20348.2227

# `manifold init` stored an admin context for this user (here: the demo's XDG_CONFIG_HOME); on another machine
# it would be: manifold login $coordinator --token-file TOKEN_FILE --ca-fingerprint $fingerprint
step "manifold agent list"
sleep 1  # the agents' first polls
"$manifold" agent list

step "The web dashboard: manifold dashboard"
dashboard_url="$("$manifold" dashboard)"
viewer_token="$("$manifold" token create --name demo-viewer --role viewer --output json | jq -r .secret)"
echo "  Open $dashboard_url in a browser on this machine (the coordinator's CA is $work/coordinator/pki/ca.crt;"
echo "  accept its certificate or import the CA) and sign in with this viewer token to watch the build live:"
echo "  $viewer_token"
if [ -t 0 ] && [ "${DEMO_WAIT:-1}" = 1 ]; then
    read -r -p "  Press Enter to submit the build (DEMO_WAIT=0 skips these pauses) " _
fi

step "manifold build submit $registry/demo/hello --platform linux/amd64 --platform linux/arm64 --platform windows/amd64:10.0.20348 --watch"
"$manifold" build submit "$registry/demo/hello" --tag 1.0 --tag latest \
    --platform linux/amd64 --platform linux/arm64 --platform windows/amd64:10.0.20348 \
    --context "$here/sample" --file Containerfile --watch

step "manifold manifest inspect $registry/demo/hello:latest"
export DOCKER_CONFIG="$work/docker"
printf '%s\n' "$password" | "$manifold" registry login "$registry" --username "$username" --password-stdin \
    --registry-ca "$registry=$ca" >/dev/null
"$manifold" manifest inspect "$registry/demo/hello:latest" --registry-ca "$registry=$ca"

step "Checking with skopeo that the registry returns exactly what the coordinator published"
ours="$("$manifold" manifest inspect --raw "$registry/demo/hello:1.0" --registry-ca "$registry=$ca" | sha256sum)"
theirs="$(skopeo inspect --raw --cert-dir "$work/certs" --creds "$username:$password" "docker://$registry/demo/hello:1.0" | sha256sum)"
[ "$ours" = "$theirs" ] || { echo "skopeo disagrees: $ours vs $theirs" >&2; exit 1; }
echo "  identical (sha256 of the stored bytes: ${ours%% *})"

step "Done: $registry/demo/hello:1.0 and :latest list linux/amd64, linux/arm64 and windows/amd64 (10.0.20348)"
if [ -t 0 ] && [ "${DEMO_WAIT:-1}" = 1 ]; then
    read -r -p "  The dashboard stays at $dashboard_url until you press Enter (then everything stops) " _
fi
