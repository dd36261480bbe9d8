#!/usr/bin/env bash
# Times publishing a two-platform manifest list with `manifold manifest create` against the same job done with
# `docker manifest create` + `docker manifest push` (docker CLI only, no engine), both against one real registry
# on loopback (plain HTTP). Prints each tool's mean wall time over RUNS runs and the ratio docker/manifold
# (above 1: Manifold is faster). Both tools start as fresh processes every run, as in a CI pipeline.
#
#   deploy/bench/manifest-vs-docker.sh [RUNS]      (default 10; needs root for buildah's vfs storage)
#   MANIFOLD_BIN=path/to/release/manifold deploy/bench/manifest-vs-docker.sh   (skips the release build)
set -euo pipefail

RUNS="${1:-10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/deploy/testenv/install-deps.sh" >/dev/null
command -v docker >/dev/null || { echo "manifest-vs-docker.sh: needs the docker CLI (docker.io or docker-ce-cli)" >&2; exit 1; }

work="$(mktemp -d /tmp/manifold-bench.XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
registry="127.0.0.1:$port"
cleanup() {
    "$ROOT/deploy/testenv/registry-env.sh" stop "$work/registry" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

bin="${MANIFOLD_BIN:-}"
if [ -z "$bin" ]; then
    echo "building manifold (release)…"
    swift build --package-path "$ROOT" --scratch-path "$ROOT/.build-bench" -c release --product manifold >/dev/null
    bin="$ROOT/.build-bench/release/manifold"
fi

"$ROOT/deploy/testenv/registry-env.sh" start "$work/registry" http "$port" >/dev/null
buildah=(buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver vfs)
for platform in linux/amd64 linux/arm64; do
    tag="${platform//\//-}"
    "${buildah[@]}" bud --quiet --isolation chroot --platform "$platform" -t "localhost/bench:$tag" \
        "$ROOT/deploy/sample" >/dev/null
    "${buildah[@]}" push --quiet --tls-verify=false "localhost/bench:$tag" "docker://$registry/bench/app:$tag"
done
export DOCKER_CONFIG="$work/docker"
mkdir -p "$DOCKER_CONFIG"

seconds() { python3 -c 'import time; print(time.monotonic())'; }
mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(sum(v)/len(v))" "$@"; }

manifold_times=()
docker_times=()
for run in $(seq 1 "$RUNS"); do
    start="$(seconds)"
    "$bin" manifest create "$registry/bench/app" --tag "m$run" --insecure-registry "$registry" \
        "$registry/bench/app:linux-amd64" "$registry/bench/app:linux-arm64" >/dev/null
    manifold_times+=("$(python3 -c "import time; print(time.monotonic() - $start)")")

    start="$(seconds)"
    docker manifest create --insecure "$registry/bench/app:d$run" \
        "$registry/bench/app:linux-amd64" "$registry/bench/app:linux-arm64" >/dev/null
    docker manifest push --insecure --purge "$registry/bench/app:d$run" >/dev/null
    docker_times+=("$(python3 -c "import time; print(time.monotonic() - $start)")")
done

m="$(mean "${manifold_times[@]}")"
d="$(mean "${docker_times[@]}")"
python3 - "$m" "$d" "$RUNS" <<'PY'
import sys
m, d, runs = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
print(f"two-platform list, {runs} runs: manifold {m*1000:.0f} ms, docker manifest create+push {d*1000:.0f} ms, "
      f"ratio docker/manifold = {d/m:.2f}")
PY
