# Sourced by the benchmarks: a real Manifold stack on loopback for one run of a script. Sets $work (removed on exit
# unless KEEP=1), $manifold, $agent, $registry, $ca, $coordinator and $coordinator_ca, and starts:
#   - docker-registry with TLS and basic auth, holding one small image per platform in $registry/$repository
#     (seed-linux-amd64, seed-linux-arm64, seed-windows-amd64) and their manifests in $work/manifests;
#   - a coordinator (SQLite) with the registry's credentials;
#   - one manifold-agent per platform in ${platforms[@]}, with an instant `command` builder ($work/builder.sh): it PUTs
#     the seed manifest of the job's platform under the attempt's reference and reports its digest, and appends
#     "PLATFORM STARTED ENDED" (seconds since the epoch) to $work/builder-times;
#   - a build context in $work/context.
# Needs $root (the repository). MANIFOLD_BIN_DIR names already built executables (else a release build). A script
# that starts more processes defines stack_cleanup_extra, which runs first on exit.
# shellcheck shell=bash
# shellcheck source=../testenv/binaries.sh
. "$root/deploy/testenv/binaries.sh"
build_products release manifold manifold-coordinator manifold-agent
manifold="$bin_dir/manifold"
agent="$bin_dir/manifold-agent"

work="$(mktemp -d /tmp/manifold-bench.XXXXXX)"
pids=()
cleanup() {
    if declare -F stack_cleanup_extra >/dev/null; then stack_cleanup_extra || true; fi
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    "$root/deploy/testenv/registry-env.sh" stop "$work/registry" >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/logs" "$work/registry"
export XDG_CONFIG_HOME="$work/config"

registry_port="$(free_port)"
registry="127.0.0.1:$registry_port"
password="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
USERNAME=bench PASSWORD="$password" "$root/deploy/testenv/registry-env.sh" start "$work/registry" basic "$registry_port" \
    >/dev/null
ca="$work/registry/ca.crt"
mkdir -p "$work/certs"
cp "$ca" "$work/certs/ca.crt" # buildah's --cert-dir would take the registry's ca.key for a client key
printf 'user = "bench:%s"\n' "$password" >"$work/curl-credentials"
chmod 600 "$work/curl-credentials"

# One small image per platform, pushed once; the builder re-tags it (a manifest PUT, no blobs move).
repository="bench/e2e"
platforms=(linux/amd64 linux/arm64 windows/amd64:10.0.20348.2227)
storage=(--root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver vfs)
echo "payload" >"$work/payload.txt"
mkdir -p "$work/manifests"
for platform in "${platforms[@]}"; do
    os="${platform%%/*}"
    rest="${platform#*/}"
    arch="${rest%%:*}"
    container="$(buildah "${storage[@]}" from scratch)"
    buildah "${storage[@]}" copy "$container" "$work/payload.txt" /payload.txt >/dev/null
    config=(--os "$os" --arch "$arch")
    [ "$rest" != "$arch" ] && config+=(--os-version "${rest#*:}")
    buildah "${storage[@]}" config "${config[@]}" "$container"
    key="${os}-${arch}"
    buildah "${storage[@]}" commit --quiet "$container" "bench-$key" >/dev/null
    buildah "${storage[@]}" push --quiet --cert-dir "$work/certs" --creds "bench:$password" --format oci \
        "bench-$key" "docker://$registry/$repository:seed-$key"
    curl -fsS --cacert "$ca" -K "$work/curl-credentials" -H "Accept: application/vnd.oci.image.manifest.v1+json" \
        "https://$registry/v2/$repository/manifests/seed-$key" -o "$work/manifests/$key.json"
done

# The instant builder: PUT the seed manifest of the job's platform under the attempt's reference, report its digest.
cat >"$work/builder.sh" <<'BUILDER'
#!/usr/bin/env bash
set -euo pipefail
started=$(date +%s.%N)
platform="${MANIFOLD_PLATFORM%%:*}"
key="${platform/\//-}"
reference="$MANIFOLD_IMAGE_REFERENCE"
host="${reference%%/*}"
path="${reference#*/}"
repository="${path%:*}"
tag="${path##*:}"
manifest="$BENCH_WORK/manifests/$key.json"
curl -fsS --cacert "$BENCH_CA" -K "$BENCH_WORK/curl-credentials" -X PUT \
    -H "Content-Type: application/vnd.oci.image.manifest.v1+json" --data-binary "@$manifest" \
    "https://$host/v2/$repository/manifests/$tag" >/dev/null
printf 'sha256:%s\n' "$(sha256sum "$manifest" | cut -d' ' -f1)" >"$MANIFOLD_DIGEST_FILE"
echo "$MANIFOLD_PLATFORM $started $(date +%s.%N)" >>"$BENCH_WORK/builder-times"
BUILDER
chmod 755 "$work/builder.sh"

coordinator_port="$(free_port)"
coordinator="https://127.0.0.1:$coordinator_port"
"$manifold" init --state-dir "$work/coordinator" --listen "127.0.0.1:$coordinator_port" --allow-registry "$registry" \
    >"$work/init.txt"
value_after() { grep -A1 "^$1" "$work/init.txt" | tail -n 1 | tr -d ' '; }
coordinator_ca="$work/coordinator/pki/ca.crt"
value_after 'Admin token' >"$work/admin-token"
chmod 600 "$work/admin-token"
fingerprint="$(value_after 'CA fingerprint')"
printf '%s\n' "$password" | "$manifold" registry login "$registry" --state-dir "$work/coordinator" \
    --username bench --password-stdin --registry-ca "$registry=$ca" >/dev/null
MANIFOLD_REGISTRY_CAS="$registry=$ca" "$manifold" serve --state-dir "$work/coordinator" >"$work/logs/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    curl -fsS --cacert "$work/coordinator/pki/ca.crt" "$coordinator/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
"$manifold" token create --name bench-join --role join --uses 3 --output json | jq -r .secret >"$work/join-token"
for platform in "${platforms[@]}"; do
    name="bench-${platform//[\/:.]/-}"
    "$agent" join "$coordinator" --token-file "$work/join-token" --ca-fingerprint "$fingerprint" \
        --state-dir "$work/agents/$name" --name "$name" --platform "$platform" >/dev/null
    BENCH_WORK="$work" BENCH_CA="$ca" "$agent" run --state-dir "$work/agents/$name" --platform "$platform" \
        --builder command --command "$work/builder.sh" >"$work/logs/$name.log" 2>&1 &
    pids+=($!)
done
mkdir -p "$work/context"
printf 'FROM scratch\nCOPY payload.txt /\n' >"$work/context/Dockerfile"
cp "$work/payload.txt" "$work/context/"
sleep 1 # every agent holds a poll
