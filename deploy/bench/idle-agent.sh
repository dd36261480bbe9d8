#!/usr/bin/env bash
# What an idle agent costs its host: a real `manifold-agent run` joined to a real coordinator (TLS, the coordinator's
# default long poll), no work, measured from /proc over WINDOW seconds after a warm-up:
#   - resident memory now and at its peak (VmRSS, VmHWM);
#   - CPU time (user + system) per minute;
#   - wake-ups: context switches of all its threads per minute (voluntary ones are the thread going to sleep after
#     waking), then a second window under `strace -f -c` for the system calls per minute and which ones.
# Targets (issue 12): RSS < 15 MiB, no work between two polls (a poll is held 30 s: about 2 requests a minute).
#   Usage: deploy/bench/idle-agent.sh [WINDOW seconds (default 60)]
# As root on Debian 12 with strace (deploy/testenv/install-deps.sh installs it).
# MANIFOLD_BIN_DIR names a directory holding already built `manifold`, `manifold-coordinator` and `manifold-agent` (figures need release).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$(dirname "$here")")"
cd "$root"
window="${1:-60}"

# shellcheck source=../testenv/binaries.sh
. "$root/deploy/testenv/binaries.sh"
build_products release manifold manifold-coordinator manifold-agent
manifold="$bin_dir/manifold"
agent="$bin_dir/manifold-agent"

work="$(mktemp -d /tmp/manifold-bench-idle.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port="$(free_port)"
"$manifold" init --state-dir "$work/coordinator" --listen "127.0.0.1:$port" --allow-registry registry.bench.invalid \
    >"$work/init.txt"
value_after() { grep -A1 "^$1" "$work/init.txt" | tail -n 1 | tr -d ' '; }
"$manifold" serve --state-dir "$work/coordinator" >"$work/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
    curl -fsS --cacert "$work/coordinator/pki/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
"$agent" join "https://127.0.0.1:$port" --token-file - --ca-fingerprint "$(value_after 'CA fingerprint')" \
    --state-dir "$work/agent" --name idle --platform linux/amd64 <<<"$(value_after 'Agent join token')" \
    >"$work/join.log"
"$agent" run --state-dir "$work/agent" --platform linux/amd64 --builder command --command /bin/true \
    >"$work/agent.log" 2>&1 &
agent_pid=$!
pids+=("$agent_pid")
sleep 5 # joined, first poll held

status() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$agent_pid/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$agent_pid/stat"; }
switches() {
    cat /proc/"$agent_pid"/task/*/status 2>/dev/null |
        awk '$1 == "voluntary_ctxt_switches:" { v += $2 } $1 == "nonvoluntary_ctxt_switches:" { n += $2 } END { print v, n }'
}
ticks_per_second="$(getconf CLK_TCK)"

cpu_before="$(cpu_ticks)"
read -r voluntary_before involuntary_before <<<"$(switches)"
sleep "$window"
cpu_after="$(cpu_ticks)"
read -r voluntary_after involuntary_after <<<"$(switches)"
per_minute() { python3 -c "print(f'{($1) * 60 / $window:.1f}')"; }

echo "idle agent over ${window} s (release build, $(nproc) cores), $(ls /proc/"$agent_pid"/task | wc -l) threads"
printf '  resident memory     %s MiB now, %s MiB peak   (target < 15 MiB)\n' \
    "$(python3 -c "print(f'{$(status VmRSS) / 1024:.1f}')")" "$(python3 -c "print(f'{$(status VmHWM) / 1024:.1f}')")"
printf '  CPU                 %s ms per minute\n' \
    "$(per_minute "($cpu_after - $cpu_before) * 1000 / $ticks_per_second")"
# A thread that exits meanwhile (the runtime retires idle worker threads) takes its counts along: hence max(0, …).
printf '  context switches    %s voluntary + %s involuntary per minute, threads alive at both ends\n' \
    "$(per_minute "max(0, $voluntary_after - $voluntary_before)")" \
    "$(per_minute "max(0, $involuntary_after - $involuntary_before)")"

timeout --signal=INT "$window" strace -f -c -p "$agent_pid" -o "$work/strace.txt" >/dev/null 2>&1 || true
python3 - "$work/strace.txt" "$window" <<'SUMMARY'
import re, sys
path, window = sys.argv[1], float(sys.argv[2])
rows = {}
for line in open(path):
    fields = line.split()
    # "% time  seconds  usecs/call  calls  errors  syscall": numbers first, the name last; errors may be blank.
    if len(fields) < 5 or not re.fullmatch(r"[\d.]+", fields[0]):
        continue
    rows[fields[-1]] = int(fields[3])
total = rows.pop("total", sum(rows.values()))
waits = sum(calls for name, calls in rows.items()
            if name in ("epoll_wait", "epoll_pwait", "poll", "ppoll", "futex", "nanosleep", "clock_nanosleep", "select"))
print(f"  wake-ups            {waits * 60 / window:.1f} per minute (blocking waits that returned, strace -f -c)")
print(f"  system calls        {total * 60 / window:.1f} per minute (same window); most frequent:")
for name, calls in sorted(rows.items(), key=lambda item: -item[1])[:6]:
    print(f"      {name:<16} {calls * 60 / window:.1f} per minute")
SUMMARY
