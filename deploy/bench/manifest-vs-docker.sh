#!/usr/bin/env bash
# Times publishing a two-platform manifest list with `manifold manifest create` against the same job done with
# `docker manifest create` + `docker manifest push` (docker CLI only, no engine), both against one real registry
# on loopback (plain HTTP). Prints each tool's mean wall time over RUNS runs and the ratio docker/manifold
# (above 1: Manifold is faster). Both tools start as fresh processes every run, as in a CI pipeline.
#
#   deploy/bench/manifest-vs-docker.sh [RUNS]      (default 10; needs root for buildah's vfs storage)
# MANIFOLD_BIN_DIR names a directory holding a built `manifold` (figures need release), as for the other benchmarks;
# without it the release build of the package's own .build directory is brought up to date and used.
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

# shellcheck source=../testenv/binaries.sh
. "$ROOT/deploy/testenv/binaries.sh"
cd "$ROOT"
build_products release manifold >/dev/null
bin="$bin_dir/manifold"

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

# Bash's own clock, read when the tool has exited (the argument expands before python starts): a helper process that
# read the time itself would add its start-up to both sides and pull the ratio to 1.
since() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$EPOCHREALTIME"; }
mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(sum(v)/len(v))" "$@"; }

manifold_times=()
docker_times=()
for run in $(seq 1 "$RUNS"); do
    start=$EPOCHREALTIME
    "$bin" manifest create "$registry/bench/app" --tag "m$run" --insecure-registry "$registry" \
        "$registry/bench/app:linux-amd64" "$registry/bench/app:linux-arm64" >/dev/null
    manifold_times+=("$(since "$start")")

    start=$EPOCHREALTIME
    docker manifest create --insecure "$registry/bench/app:d$run" \
        "$registry/bench/app:linux-amd64" "$registry/bench/app:linux-arm64" >/dev/null
    docker manifest push --insecure --purge "$registry/bench/app:d$run" >/dev/null
    docker_times+=("$(since "$start")")
done

m="$(mean "${manifold_times[@]}")"
d="$(mean "${docker_times[@]}")"
python3 - "$m" "$d" "$RUNS" <<'PY'
import sys
m, d, runs = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
print(f"two-platform list, {runs} runs: manifold {m*1000:.0f} ms, docker manifest create+push {d*1000:.0f} ms, "
      f"ratio docker/manifold = {d/m:.2f}")
PY
