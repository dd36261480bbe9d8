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
# MANIFOLD_BIN_DIR names a directory holding built `manifold`, `manifold-coordinator` and `manifold-agent` (figures need release).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$(dirname "$here")")"
cd "$root"
runs="${1:-20}"

# shellcheck source=manifold-stack.sh
. "$here/manifold-stack.sh"

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
