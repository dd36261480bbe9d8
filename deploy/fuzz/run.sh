#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ (fuzzer + address sanitizer) and runs each for a bounded time on a copy of
# its seed corpus in Fuzz/Corpus/<target>/, so the repository is never written to. Fails when any target crashes,
# traps, leaks, times out on one input or runs out of memory, and prints the input that did it.
#
#   deploy/fuzz/run.sh [SECONDS-PER-TARGET [TARGET…]]     default: 20 seconds, every target
#
# Reproduce a failure with the command it prints; Fuzz/README.md says how to fuzz longer and grow a corpus.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
seconds="${1:-20}"
shift $(($# > 0 ? 1 : 0))
scratch="$root/.build-fuzz"

if (($# > 0)); then
    targets=("$@")
else
    targets=()
    for dir in "$root"/Fuzz/Sources/fuzz-*/; do targets+=("$(basename "$dir")"); done
fi

# The fuzz package depends on the main one, so the main build's pins (when there are any) save resolving again.
if [[ -f "$root/Package.resolved" && ! -f "$root/Fuzz/Package.resolved" ]]; then
    cp "$root/Package.resolved" "$root/Fuzz/Package.resolved"
fi
# Release (optimised) code runs several times as many inputs per second as debug; -enable-testing lets the
# build-file target reach the CLI's internal parser.
# SwiftPM's --sanitize=fuzzer --sanitize=address links libFuzzer's main, but it passes the compiler two flags and
# the second replaces the first, which leaves the code without coverage counters (libFuzzer then fuzzes blind);
# the combined -sanitize=fuzzer,address after them instruments it.
build=(swift build -c release --package-path "$root/Fuzz" --scratch-path "$scratch" --sanitize=fuzzer --sanitize=address
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing)
started=$SECONDS
"${build[@]}"
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - started)) s"
bin="$("${build[@]}" --show-bin-path)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    artifacts="$scratch/findings/$target/"
    log="$scratch/logs/$target.log"
    rm -rf "$artifacts"
    mkdir -p "$corpus" "$artifacts" "$work/tmp" "$(dirname "$log")"
    cp -R "$root/Fuzz/Corpus/$target/." "$corpus/"
    # LeakSanitizer reports the buffers Foundation's Data(contentsOf:) keeps behind tagged pointers as leaks after a
    # few inputs; the docker config target reads a file per input, so it runs without leak detection.
    leaks=1
    [[ "$target" == fuzz-docker-config ]] && leaks=0
    # -timeout: one input may take at most 10 s; -rss_limit_mb: a parser must not need 2 GiB for a small input.
    if TMPDIR="$work/tmp" SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="detect_leaks=$leaks" "$bin/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -detect_leaks="$leaks" -artifact_prefix="$artifacts" -print_final_stats=1 "$corpus" >"$log" 2>&1; then
        if ! grep -q "inline 8-bit counters" "$log"; then
            failed+=("$target")
            echo "fuzz: $target FAILED: the code has no coverage counters, so libFuzzer would fuzz blind ($log)"
            continue
        fi
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
        rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
        units="$(find "$corpus" -type f | wc -l)"
        echo "fuzz: $target: ok, $runs inputs in ${seconds} s ($rate/s), corpus $units inputs"
    else
        failed+=("$target")
        echo "fuzz: $target FAILED; the end of its log ($log):"
        tail -n 60 "$log"
        for finding in "$artifacts"*; do
            [[ -f "$finding" ]] || continue
            echo "fuzz: $target: reproducer $finding; run it again with:"
            echo "    $bin/$target $finding"
        done
    fi
done

if ((${#failed[@]} > 0)); then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds} s each without a finding"
