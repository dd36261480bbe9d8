#!/usr/bin/env bash
# Manifold against a real peer, Buildbot 4.3 (PyPI `buildbot`, `buildbot-worker`, `buildbot-www`, installed into a
# virtual environment of this run), on this machine, alternating run by run in one driver (deploy/bench/peer.py):
# end to end, dispatch and throughput of a three-platform build on three local build hosts with a trivial step.
# Manifold does more in the same time: it verifies every pushed digest in a real registry and publishes the list.
#   Usage: deploy/bench/buildbot-peer.sh [RUNS (default 10)] [BUILDS for throughput (default 20)]
# MANIFOLD_BIN_DIR names a directory holding built `manifold`, `manifold-coordinator` and `manifold-agent` (figures need release).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$(dirname "$here")")"
cd "$root"
runs="${1:-10}"
builds="${2:-20}"

# shellcheck source=manifold-stack.sh
. "$here/manifold-stack.sh"

buildbot="$work/buildbot"
stack_cleanup_extra() {
    "$buildbot/venv/bin/buildbot-worker" stop "$buildbot/w0" >/dev/null 2>&1 || true
    "$buildbot/venv/bin/buildbot-worker" stop "$buildbot/w1" >/dev/null 2>&1 || true
    "$buildbot/venv/bin/buildbot-worker" stop "$buildbot/w2" >/dev/null 2>&1 || true
    "$buildbot/venv/bin/buildbot" stop "$buildbot/master" >/dev/null 2>&1 || true
}

echo "== installing Buildbot 4.3 into $buildbot/venv"
mkdir -p "$buildbot/master"
python3 -m venv "$buildbot/venv"
"$buildbot/venv/bin/pip" install --quiet "buildbot>=4.3,<4.4" "buildbot-worker>=4.3,<4.4" "buildbot-www>=4.3,<4.4"
worker_password="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
pb_port="$(free_port)"
www_port="$(free_port)"
jq -n --argjson workers "${#platforms[@]}" --argjson pb "$pb_port" --argjson www "$www_port" \
    --arg password "$worker_password" --arg starts "$buildbot/step-starts" \
    '{workers: $workers, pb_port: $pb, www_port: $www, worker_password: $password, starts: $starts}' \
    >"$buildbot/master/bench.json"
cp "$here/buildbot/master.cfg" "$buildbot/master/master.cfg"
"$buildbot/venv/bin/buildbot" create-master --relocatable --quiet "$buildbot/master" >/dev/null
"$buildbot/venv/bin/buildbot" start "$buildbot/master" >/dev/null
for index in $(seq 0 $((${#platforms[@]} - 1))); do
    "$buildbot/venv/bin/buildbot-worker" create-worker --relocatable --quiet "$buildbot/w$index" "127.0.0.1:$pb_port" \
        "w$index" "$worker_password" >/dev/null
    "$buildbot/venv/bin/buildbot-worker" start "$buildbot/w$index" >/dev/null
done
for _ in $(seq 1 100); do
    connected="$(curl -fsS "http://127.0.0.1:$www_port/api/v2/workers" 2>/dev/null \
        | jq '[.workers[] | select(.connected_to | length > 0)] | length' 2>/dev/null || echo 0)"
    [ "$connected" = "${#platforms[@]}" ] && break
    sleep 0.2
done
echo "Buildbot $("$buildbot/venv/bin/buildbot" --version | head -n 1 | awk '{print $3}'): master and ${connected:-0} workers up"

platform_list="$(IFS=,; echo "${platforms[*]%.*}")"
python3 "$here/peer.py" --work "$work" --manifold "$manifold" --manifold-url "$coordinator" \
    --manifold-ca "$coordinator_ca" --manifold-token-file "$work/admin-token" \
    --manifold-db "$work/coordinator/manifold.db" --image "$registry/$repository" --context "$work/context" \
    --platforms "$platform_list" --buildbot-port "$www_port" --buildbot-starts "$buildbot/step-starts" \
    --runs "$runs" --builds "$builds"
