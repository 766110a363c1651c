#!/usr/bin/env bash
# make test-docker: the Docker runtime end to end, for real, through the same make targets
# and compose files users run, on images built here (no registry is needed):
#   engine -> images -> make kafka -> make spark -> bounded make spark-produce
#   -> Kafka UI (kafka-ui service) lists the topics in headless Chromium
#   -> bounded make spark-consume-purchase -> windowed totals == totals of the topic
#   -> the dashboard service shows the same totals in headless Chromium
#   -> settings changed for one run (GROUP_BY, WINDOW_DURATION) reach the job in its container:
#      its start line and its totals per 5-minute window and furniture -> make clean
#
# Isolated from anything else on the machine: its own compose project, network, container
# names and free host ports; it removes its containers, network and volumes, and stops
# dockerd only if it started it.
#
# Env: TEST_DOCKER_MAKE (how to call the top Makefile), PY (.venv python), TEST_DOCKER_EVENTS (2000).
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1

read -ra make_cmd <<<"${TEST_DOCKER_MAKE:-make}" # e.g. "make -f Makefile"
PY=${PY:-.venv/bin/python}
EVENTS=${TEST_DOCKER_EVENTS:-2000}
env_value() { sed -n "s/^$1=//p" .cache/defaults.env .env | tail -n1; }  # .env's, else the package's default
: "${LOCAL_BASE_IMAGE:=$(env_value LOCAL_BASE_IMAGE)}"
: "${LOCAL_KAFKA_IMAGE:=$(env_value LOCAL_KAFKA_IMAGE)}"
: "${KAFKA_UI_IMAGE:=$(env_value KAFKA_UI_IMAGE)}"
: "${KAFKA_TOPIC_NAME:=$(env_value KAFKA_TOPIC_NAME)}"
: "${WINDOW_DURATION:=$(env_value WINDOW_DURATION)}"
: "${GROUP_BY=$(env_value GROUP_BY)}"

project=pa-test-docker
run_id=test-docker-$(date +%Y%m%d-%H%M%S)
results_dir=results/$run_id
started_dockerd=0
ok=0
timings=()
t_all=$SECONDS

say() { printf '\n=== test-docker %s: %s\n' "$(date +%T)" "$*"; }
# timed NAME CMD...: run CMD, remember how long it took
timed() {
    local name=$1 t0=$SECONDS
    shift
    say "$name"
    "$@"
    timings+=("$(printf '%-28s %4ds' "$name" $((SECONDS - t0)))")
}

finish() {
    local rc=$?
    set +e
    if docker info >/dev/null 2>&1 && [[ ${#overrides[@]} -gt 0 ]]; then
        if ((rc != 0)); then
            say "FAILED (exit $rc): last container logs"
            docker compose --env-file .cache/defaults.env --env-file .env -f docker/docker-compose-kafka.yml -f docker/docker-compose-spark.yml \
                -p "$project" logs --tail 40 --no-color 2>&1 | tail -n 150
        fi
        say "removing the test project's containers, network and volumes"
        "${make_cmd[@]}" --no-print-directory wipe "${overrides[@]}" >/dev/null 2>&1
        left=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
        [[ -z "$left" ]] || { echo "containers left behind: $left"; rc=1; }
        docker network inspect "$project-net" >/dev/null 2>&1 && { echo "network $project-net left behind"; rc=1; }
    fi
    ((rc == 0)) && rm -rf "$results_dir"
    if ((started_dockerd)); then
        say "stopping the dockerd this test started"
        docker-without-registry/dockerd.sh stop
    fi
    if ((rc == 0 && ok)); then
        say "timings"
        printf '  %s\n' "${timings[@]}"
        printf '  %-28s %4ds\n' "total" $((SECONDS - t_all))
        echo "1 passed, 0 failed: test-docker"
    else
        [[ -d "$results_dir" ]] && echo "aggregator output kept in $results_dir"
        echo "0 passed, 1 failed: test-docker"
        ((rc == 0)) && rc=1
    fi
    exit "$rc"
}
overrides=()
trap finish EXIT

# 1. engine and compose v2
if ! docker info >/dev/null 2>&1; then
    timed "start dockerd" docker-without-registry/dockerd.sh start
    started_dockerd=1
fi
"${make_cmd[@]}" --no-print-directory compose-plugin

# 2. isolated settings, passed on make's command line (they win over .env there)
read -r kafka_port ui_port master_ui_port driver_ui_port dashboard_port < <("$PY" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)
kafka_ui_local=0
if ! docker image inspect "$KAFKA_UI_IMAGE" >/dev/null 2>&1; then
    kafka_ui_local=1
    say "Kafka UI ($KAFKA_UI_IMAGE) is not on this engine and no image registry answers here: the kafka-ui service runs the local image of kaskade (KAFKA_UI_LOCAL=1)"
fi
overrides=(
    RUNTIME=docker
    "COMPOSE_PROJECT_NAME=$project" "DOCKER_NETWORK=$project-net" "CONTAINER_PREFIX=$project-"
    "KAFKA_BOOTSTRAP_SERVERS=localhost:$kafka_port" "KAFKA_HOST_PORT=$kafka_port"
    KAFKA_UI=1 "KAFKA_UI_LOCAL=$kafka_ui_local" "KAFKA_UI_PORT=$ui_port" DASHBOARD=1 "DASHBOARD_PORT=$dashboard_port"
    "SPARK_MASTER_UI_PORT=$master_ui_port" "SPARK_DRIVER_UI_PORT=$driver_ui_port"
    "KAFKA_IMAGE=$LOCAL_KAFKA_IMAGE" "SPARK_BASE_IMAGE=$LOCAL_BASE_IMAGE" SPARK_IMAGE=purchase-analytics/spark:test
)
echo "project $project, host ports: kafka $kafka_port, Kafka UI $ui_port, dashboard $dashboard_port, spark master UI $master_ui_port, driver UI $driver_ui_port"
"${make_cmd[@]}" --no-print-directory wipe "${overrides[@]}" >/dev/null 2>&1 || true # leftovers of an interrupted run

# 3. images (cached by their inputs), jars and the package zip
timed "jars + package" "${make_cmd[@]}" --no-print-directory jars package
timed "images" "${make_cmd[@]}" --no-print-directory docker-images "${overrides[@]}"

# 4. the user's targets
timed "make kafka" "${make_cmd[@]}" --no-print-directory kafka "${overrides[@]}"
timed "make spark" "${make_cmd[@]}" --no-print-directory spark "${overrides[@]}"
: "${KAFKA_DLQ_TOPIC_NAME:=$(env_value KAFKA_DLQ_TOPIC_NAME)}"
pages=(env PYTHONPATH=tests "$PY" docker/check_pages.py --bootstrap-servers "localhost:$kafka_port" --topic "$KAFKA_TOPIC_NAME" --dlq-topic "$KAFKA_DLQ_TOPIC_NAME")
timed "Kafka UI in the browser" "${pages[@]}" --kafka-ui "http://127.0.0.1:$ui_port/"
mkdir -p "$results_dir"
timed "make spark-produce" "${make_cmd[@]}" --no-print-directory spark-produce "${overrides[@]}" EVENTS="$EVENTS" \
    ARGS="--rate 0 --seed 7 --late-fraction 0.2 --max-lateness-s 540"
timed "make spark-consume-purchase" "${make_cmd[@]}" --no-print-directory spark-consume-purchase "${overrides[@]}" \
    ARGS="--available-now --output-dir /opt/app/$results_dir --checkpoint /opt/app/.data/checkpoints/$run_id"

# 5. the windowed totals against the events in the topic, read from the host
timed "verify totals" "$PY" docker-without-registry/verify_totals.py --bootstrap-servers "localhost:$kafka_port" \
    --topic "$KAFKA_TOPIC_NAME" --output-dir "$results_dir" --window "$WINDOW_DURATION" --group-by "$GROUP_BY" \
    --expect-events "$EVENTS"

timed "dashboard in the browser" "${pages[@]}" --dashboard "http://127.0.0.1:$dashboard_port/"

# 6. the settings of .env reach the job in its container: make hands it every one, with make's
#    value; here two values other than .env's, given as a user's environment gives them
changed_window="5 minutes" changed_group=furniture
consume_changed() {
    GROUP_BY=$changed_group WINDOW_DURATION=$changed_window "${make_cmd[@]}" --no-print-directory spark-consume-purchase \
        "${overrides[@]}" ARGS="--available-now --output-dir /opt/app/$results_dir/changed --checkpoint /opt/app/.data/checkpoints/$run_id-changed" \
        2>&1 | tee "$results_dir/changed.log"
    if ! grep -q "aggregating topic .*: $changed_window windows by $changed_group," "$results_dir/changed.log"; then
        echo "FAIL: the job's start line does not say '$changed_window windows by $changed_group': the settings did not reach it"
        return 1
    fi
    echo "the job in its container took WINDOW_DURATION=$changed_window and GROUP_BY=$changed_group"
}
timed "changed settings reach the job" consume_changed
timed "verify totals by furniture" "$PY" docker-without-registry/verify_totals.py --bootstrap-servers "localhost:$kafka_port" \
    --topic "$KAFKA_TOPIC_NAME" --output-dir "$results_dir/changed" --window "$changed_window" --group-by "$changed_group" \
    --expect-events "$EVENTS"

# 7. make clean removes the containers and the network
timed "make clean" "${make_cmd[@]}" --no-print-directory clean "${overrides[@]}"
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
[[ -z "$left" ]] || { echo "make clean left containers: $left"; exit 1; }
if docker network inspect "$project-net" >/dev/null 2>&1; then
    echo "make clean left the network $project-net"
    exit 1
fi
ok=1
