#!/usr/bin/env bash
# Runs one `swift test` phase of deploy/run-tests.sh under a watchdog.
#
#   deploy/testenv/test-phase.sh TITLE LIMIT_SECONDS [swift test arguments…]
#
# A phase still running after LIMIT_SECONDS is stopped and fails, after printing the tests that started and never
# ended (from Swift Testing's event stream) and every thread's stack of the test process (gdb), so a hang costs minutes
# and names itself instead of running silently into CI's limit. Output is line-buffered, so the log shows the last
# line printed, not the last full 4 KiB block. The phase's output and event stream stay in $MANIFOLD_TEST_LOGS
# (default /tmp/manifold-test-logs).
set -uo pipefail
title=$1
limit=$2
shift 2

logs=${MANIFOLD_TEST_LOGS:-/tmp/manifold-test-logs}
mkdir -p "$logs"
name=$(printf '%s' "$title" | tr -c 'A-Za-z0-9' '-' | tr -s '-')
log="$logs/$name.log"
events="$logs/$name.events.jsonl"
rm -f "$events"

echo "==> swift test: $title (at most ${limit} s)"
stdbuf -oL -eL swift test --skip-build "$@" \
    --experimental-event-stream-output "$events" --experimental-event-stream-version 0 > >(tee "$log" | grep --line-buffered -v '^◇ ') 2>&1 &
runner=$!

descendants() {
    local child
    for child in $(pgrep -P "$1" || true); do
        echo "$child"
        descendants "$child"
    done
}

started=$SECONDS
while kill -0 "$runner" 2>/dev/null && ((SECONDS - started < limit)); do
    sleep 2
done

if kill -0 "$runner" 2>/dev/null; then
    echo "!! $title is still running after ${limit} s; stopping it"
    echo "!! tests that started and did not end:"
    python3 - "$events" <<'EOF'
import json, sys
started, ended = {}, set()
try:
    lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
except OSError as error:
    print(f"!!   (no event stream: {error})")
    lines = []
for line in lines:
    try:
        record = json.loads(line)
    except ValueError:
        continue
    payload = record.get("payload", {})
    if record.get("kind") != "event" or "testID" not in payload:
        continue
    test = payload["testID"]
    if payload.get("kind") == "testStarted":
        started[test] = payload.get("instant", {}).get("absolute", 0)
    elif payload.get("kind") in ("testEnded", "testSkipped"):
        ended.add(test)
for test, at in sorted(started.items(), key=lambda item: item[1]):
    if test not in ended:
        print(f"!!   {test}")
EOF
    for pid in $(descendants "$runner"); do
        grep -q 'PackageTests\.xctest' "/proc/$pid/cmdline" 2>/dev/null || continue
        echo "!! stacks of test process $pid:"
        timeout 120 gdb -p "$pid" -batch -ex 'thread apply all bt 30' 2>&1 | grep -E '^(Thread|#)' | sed 's/^/!!   /'
    done
    for pid in $(descendants "$runner") "$runner"; do kill -9 "$pid" 2>/dev/null || true; done
    wait "$runner" 2>/dev/null
    exit 124
fi

wait "$runner"
