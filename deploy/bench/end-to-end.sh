#!/usr/bin/env bash
# End to end: `manifold build submit --watch` of a three-platform build with three real agents whose builder is
# instant (it PUTs a manifest pushed once before the run, under the attempt's own tag), against a real registry
# (TLS, basic auth) on loopback. Each run's wall time is split with the coordinator's own events:
#   submit   CLI start, packing and uploading the context, until `build.submitted`
#   dispatch `build.submitted` until the last platform's `job.assigned`
#   agent    the last `job.assigned` until the last `job.verifying` (the report), minus the builder's own time
#   builder  the instant builder's own time (its curl PUT), the longest of the three; not Manifold's
#   verify   the last `job.verifying` until the last `job.succeeded` (registry checks of each digest)
#   publish  the last `job.succeeded` until `list.published` (list pushed by digest, tagged, read back)
#   exit     `list.published` until the CLI exited
# Manifold's own time is the wall time less the builder's. Target (issue 12): under 150 ms.
#   Usage: deploy/bench/end-to-end.sh [RUNS (default 20)]
# MANIFOLD_BIN_DIR names a directory holding built `manifold` and `manifold-agent` (figures need release).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$(dirname "$here")")"
cd "$root"
runs="${1:-20}"

bin_dir="${MANIFOLD_BIN_DIR:-}"
if [ -z "$bin_dir" ]; then
    swift build -c release --product manifold
    swift build -c release --product manifold-agent
    bin_dir="$(swift build -c release --show-bin-path)"
fi
manifold="$bin_dir/manifold"
agent="$bin_dir/manifold-agent"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

work="$(mktemp -d /tmp/manifold-bench-e2e.XXXXXX)"
pids=()
cleanup() {
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

platform_flags=()
for platform in "${platforms[@]}"; do platform_flags+=(--platform "${platform%.*}"); done
echo "== end to end, $runs runs: submit --watch of a ${#platforms[@]}-platform build, instant builder"
for run in $(seq 0 "$runs"); do
    : >"$work/builder-times"
    started=$(date +%s.%N)
    output="$("$manifold" build submit "$registry/$repository" --tag "r$run" "${platform_flags[@]}" \
        --context "$work/context" --watch --quiet)"
    ended=$(date +%s.%N)
    id="${output%%$'\n'*}" # --quiet prints the build's id first, then the watch
    # Event times from the store itself: the API gives them to the second.
    sqlite3 -json "file:$work/coordinator/manifold.db?mode=ro" \
        "SELECT type, createdAt FROM event WHERE buildId = '$id' ORDER BY id" \
        | jq -c '.[]' >"$work/events-$run.jsonl"
    # The first run warms caches (context upload, TLS sessions); it is not counted.
    [ "$run" = 0 ] && continue
    echo "$started $ended $(awk '{d = $3 - $2; if (d > m) m = d} END {print m + 0}' "$work/builder-times")" \
        >>"$work/runs.txt"
    cat "$work/events-$run.jsonl" >>"$work/events.jsonl"
    echo "--" >>"$work/events.jsonl"
done

python3 - "$work/runs.txt" "$work/events.jsonl" <<'REPORT'
import json, sys, statistics

runs = [tuple(map(float, line.split())) for line in open(sys.argv[1])]
builds = [[json.loads(line) for line in block.strip().splitlines()] for block in open(sys.argv[2]).read().split("--\n") if block.strip()]
def at(event): return event["createdAt"]
def last(events, kind): return max(at(e) for e in events if e["type"] == kind)
def first(events, kind): return min(at(e) for e in events if e["type"] == kind)
parts = {name: [] for name in ["wall", "builder", "manifold", "submit", "dispatch", "agent", "verify", "publish", "exit"]}
for (started, ended, builder), events in zip(runs, builds):
    submitted, assigned = first(events, "build.submitted"), last(events, "job.assigned")
    reported, verified, published = last(events, "job.verifying"), last(events, "job.succeeded"), first(events, "list.published")
    values = dict(wall=ended - started, builder=builder, manifold=ended - started - builder, submit=submitted - started,
                  dispatch=assigned - submitted, agent=reported - assigned - builder, verify=verified - reported,
                  publish=published - verified, exit=ended - published)
    for name, value in values.items(): parts[name].append(value * 1000)
print(f"{len(runs)} builds; milliseconds, p50 (min-max):")
for name, values in parts.items():
    print(f"  {name:9} {statistics.median(values):8.1f}  ({min(values):.1f}-{max(values):.1f})")
print(f"Manifold's own time p50 {statistics.median(parts['manifold']):.1f} ms (target < 150 ms)")
REPORT
