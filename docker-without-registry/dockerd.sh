#!/usr/bin/env bash
# Start and stop a Docker engine on a machine without systemd (Debian's docker.io here).
#
#   docker-without-registry/dockerd.sh start    start dockerd in the background unless an engine already answers
#   docker-without-registry/dockerd.sh stop     stop the dockerd that `start` started (never another one) and
#                              undo what it left: docker0 and br-* bridges, DOCKER iptables
#                              chains and rules, the FORWARD policy and ip_forward
#   docker-without-registry/dockerd.sh status   say whether an engine answers and whether we started it
#
# State (pid, log, what to restore) lives in $DOCKERD_STATE_DIR.
set -euo pipefail

state=${DOCKERD_STATE_DIR:-/tmp/purchase-analytics-dockerd}
pidfile=$state/dockerd.pid
log=$state/dockerd.log
timeout_s=${DOCKERD_START_TIMEOUT_S:-60}

engine_answers() { docker info >/dev/null 2>&1; }

started_by_us() { [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

links() { ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | sort; }

start() {
    if engine_answers; then
        echo "docker engine already answers: using it (not started here)"
        return
    fi
    command -v dockerd >/dev/null || { echo "dockerd not installed (apt-get install docker.io)" >&2; exit 1; }
    [[ "$(id -u)" == 0 ]] || { echo "starting dockerd needs root" >&2; exit 1; }
    mkdir -p "$state"
    # What to give back after stop.
    iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}' >"$state/forward-policy" || true
    cat /proc/sys/net/ipv4/ip_forward >"$state/ip-forward" 2>/dev/null || true
    links >"$state/links-before"

    local start_s=$SECONDS
    nohup dockerd >"$log" 2>&1 &
    echo $! >"$pidfile"
    until engine_answers; do
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "dockerd exited; last lines of $log:" >&2
            tail -n 20 "$log" >&2
            rm -f "$pidfile"
            exit 1
        fi
        if (( SECONDS - start_s > timeout_s )); then
            echo "dockerd did not answer within ${timeout_s}s (log: $log)" >&2
            stop
            exit 1
        fi
        sleep 0.5
    done
    echo "dockerd started (pid $(cat "$pidfile"), $((SECONDS - start_s))s, log $log)"
}

cleanup_network() {
    # Rules that jump to DOCKER* chains or match docker bridges, then the chains themselves.
    local table rule chain
    for table in filter nat; do
        iptables -t "$table" -S 2>/dev/null |
            grep -E '^-A (FORWARD|INPUT|OUTPUT|PREROUTING|POSTROUTING) .*(DOCKER|docker0|br-[0-9a-f]{12})' |
            while read -r rule; do
                # shellcheck disable=SC2086
                iptables -t "$table" ${rule/#-A/-D} 2>/dev/null || true
            done
        for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
            iptables -t "$table" -F "$chain" 2>/dev/null || true
        done
        for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
            iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
    if [[ -s "$state/forward-policy" ]]; then
        iptables -P FORWARD "$(cat "$state/forward-policy")" 2>/dev/null || true
    fi
    if [[ -s "$state/ip-forward" ]]; then
        cat "$state/ip-forward" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
    fi
    # Bridges the engine made (docker0, br-<network id>) that were not there before.
    local link
    for link in $(links | grep -E '^(docker0|br-[0-9a-f]{12})$' || true); do
        grep -qx "$link" "$state/links-before" 2>/dev/null || ip link delete "$link" 2>/dev/null || true
    done
}

stop() {
    if [[ ! -s "$pidfile" ]]; then
        echo "no dockerd started by docker-without-registry/dockerd.sh: nothing to stop"
        return
    fi
    local pid containerd_pid=""
    pid=$(cat "$pidfile")
    [[ -s /var/run/docker/containerd/containerd.pid ]] && containerd_pid=$(cat /var/run/docker/containerd/containerd.pid)
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "dockerd (pid $pid) still running after 30s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # The containerd that this dockerd spawned normally exits with it.
    if [[ -n "$containerd_pid" ]]; then
        for _ in $(seq 20); do kill -0 "$containerd_pid" 2>/dev/null || break; sleep 0.5; done
        kill -TERM "$containerd_pid" 2>/dev/null || true
    fi
    cleanup_network
    rm -f "$pidfile"
    echo "dockerd (pid $pid) stopped; bridges, iptables chains and FORWARD policy restored"
}

status() {
    if engine_answers; then
        echo "docker engine answers$(started_by_us && echo " (started by docker-without-registry/dockerd.sh, pid $(cat "$pidfile"))")"
    else
        echo "no docker engine answers"
        return 1
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
