#!/usr/bin/env bash
# build/cpu-time.sh COMMAND...: run COMMAND, then print its wall time and the whole machine's
# CPU time over it, from /proc/stat: every process counts (JVMs that outlive their parent too),
# and so does anything else running on the machine meanwhile. Exits with COMMAND's status.
set -uo pipefail

busy_idle() { # jiffies: busy (user nice system irq softirq steal) and idle (idle iowait)
    read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
    echo "$((user + nice + system + irq + softirq + steal)) $((idle + iowait))"
}

read -r busy0 idle0 < <(busy_idle)
start=$(date +%s%N)
"$@"
status=$?
read -r busy1 idle1 < <(busy_idle)
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
hz=$(getconf CLK_TCK)
cores=$(nproc)
busy_s=$(((busy1 - busy0) / hz))
idle_s=$(((idle1 - idle0) / hz))
printf 'time: %d.%01d s wall; CPU (all processes, /proc/stat): %d s busy, %d s idle of %d cores (%d%% used)\n' \
    $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 100)) "$busy_s" "$idle_s" "$cores" \
    $((100 * busy_s / (busy_s + idle_s > 0 ? busy_s + idle_s : 1))) >&2
exit "$status"
