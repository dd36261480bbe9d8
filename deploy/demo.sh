#!/usr/bin/env bash
# Manifold's main job, end to end on this machine (Debian 12, as root):
#   1. installs what it needs and builds `manifold` in release mode;
#   2. starts docker-registry on loopback with TLS and basic auth;
#   3. builds a linux/amd64 and a windows/amd64 image with buildah and pushes them;
#   4. logs in, publishes the manifest list with `manifold manifest create`, and shows it.
# The sample Containerfile only copies a file, so one Linux machine can label it for Windows too;
# real deployments build each platform on a host of that platform.
# Everything it starts is stopped on exit, also on Ctrl-C. Set KEEP=1 to keep the work directory.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Installing system packages (skipped when present)"
bash "$here/testenv/install-deps.sh"

step "Building manifold (release)"
swift build -c release --product manifold
bin="$(swift build -c release --show-bin-path)/manifold"

work="$(mktemp -d /tmp/manifold-demo.XXXXXX)"
cleanup() {
    "$here/testenv/registry-env.sh" stop "$work/registry" >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
registry="127.0.0.1:$port"
username=demo
password="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"

step "Starting docker-registry on https://$registry (TLS + basic auth)"
mkdir -p "$work/registry"
USERNAME="$username" PASSWORD="$password" "$here/testenv/registry-env.sh" start "$work/registry" basic "$port" >/dev/null
ca="$work/registry/ca.crt"
mkdir -p "$work/certs"
cp "$ca" "$work/certs/ca.crt"

step "Building and pushing one image per platform with buildah"
buildah=(buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver vfs)
"${buildah[@]}" bud --quiet --isolation chroot --platform linux/amd64 \
    -t localhost/demo:linux-amd64 "$here/sample" >/dev/null
"${buildah[@]}" bud --quiet --isolation chroot --platform windows/amd64 --os-version 10.0.20348.2227 \
    -t localhost/demo:windows-amd64 "$here/sample" >/dev/null
for platform in linux-amd64 windows-amd64; do
    "${buildah[@]}" push --quiet --cert-dir "$work/certs" --creds "$username:$password" \
        --digestfile "$work/$platform.digest" localhost/demo:$platform "docker://$registry/demo/hello:1.0-$platform"
    echo "  $registry/demo/hello:1.0-$platform  $(cat "$work/$platform.digest")"
done

export DOCKER_CONFIG="$work/docker"
step "manifold registry login $registry"
printf '%s\n' "$password" | "$bin" registry login "$registry" --username "$username" --password-stdin \
    --registry-ca "$registry=$ca"

step "manifold manifest create $registry/demo/hello --tag 1.0 --tag latest"
"$bin" manifest create "$registry/demo/hello" --tag 1.0 --tag latest --registry-ca "$registry=$ca" \
    "$registry/demo/hello:1.0-linux-amd64" "$registry/demo/hello:1.0-windows-amd64"

step "manifold manifest inspect $registry/demo/hello:latest"
"$bin" manifest inspect "$registry/demo/hello:latest" --registry-ca "$registry=$ca"

step "Checking with skopeo that the registry returns exactly what Manifold pushed"
ours="$("$bin" manifest inspect --raw "$registry/demo/hello:1.0" --registry-ca "$registry=$ca" | sha256sum)"
theirs="$(skopeo inspect --raw --cert-dir "$work/certs" --creds "$username:$password" "docker://$registry/demo/hello:1.0" | sha256sum)"
[ "$ours" = "$theirs" ] || { echo "skopeo disagrees: $ours vs $theirs" >&2; exit 1; }
echo "  identical (sha256 of the stored bytes: ${ours%% *})"

step "Done: $registry/demo/hello:1.0 and :latest are a two-platform manifest list"
