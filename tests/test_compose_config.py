"""The compose files validate with the package's defaults and .env (`docker compose config`, no
daemon needed), and what they resolve to keeps the Docker runtime's promises: images from .env,
ports on 127.0.0.1, one network, environment overrides winning; make hands every setting (the
defaults and .env) to the producer and the job in their containers, the containers' own values aside."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from purchase_analytics.defaults import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILES = sorted((ROOT / "docker").glob("docker-compose-*.yml"))
PLUGIN_DIRS = [
    Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins",
    Path("/usr/local/lib/docker/cli-plugins"),
    Path("/usr/local/libexec/docker/cli-plugins"),
    Path("/usr/lib/docker/cli-plugins"),
    Path("/usr/libexec/docker/cli-plugins"),
]


def compose_command() -> list[str] | None:
    """`docker compose` when the CLI has the v2 plugin; else the plugin binary on its own."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    for candidate in [d / "docker-compose" for d in PLUGIN_DIRS] + [Path(shutil.which("docker-compose") or "/nonexistent")]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            probe = subprocess.run([str(candidate), "version"], capture_output=True, text=True)
            if probe.returncode == 0 and "v2" in probe.stdout:
                return [str(candidate)]
    return None


COMPOSE = compose_command()
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="no Docker Compose v2 (docker compose) installed: run `make compose-plugin`")


# The package's defaults as make writes them (.cache/defaults.env), compose's first --env-file
with tempfile.NamedTemporaryFile("w", suffix=".env", delete=False) as _defaults:
    _defaults.write("".join(f"{name}={value}\n" for name, value in DEFAULTS.items()))
DEFAULTS_ENV = Path(_defaults.name)
atexit.register(DEFAULTS_ENV.unlink, missing_ok=True)


def env_file() -> dict[str, str]:
    """Every setting's value as make and compose have it: the package's defaults, .env's over them."""
    values = dict(DEFAULTS)
    for line in (ROOT / ".env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value
    return values


def compose(*args: str, overrides: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # A bare environment: only the defaults, .env (and the given overrides) decide the result, plus
    # KAFKA_HOST_PORT, which docker/docker.mk derives from KAFKA_BOOTSTRAP_SERVERS.
    env = {k: os.environ[k] for k in ("PATH", "HOME", "DOCKER_CONFIG") if k in os.environ}
    env["KAFKA_HOST_PORT"] = env_file()["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]
    env.update(overrides or {})
    return subprocess.run(
        [*COMPOSE, "--env-file", str(DEFAULTS_ENV), "--env-file", ".env", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def resolved(*files: Path, overrides: dict[str, str] | None = None) -> dict:
    args = [a for f in files for a in ("-f", str(f.relative_to(ROOT)))]
    proc = compose(*args, "--profile", "*", "config", "--format", "json", overrides=overrides)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_there_are_compose_files():
    assert {f.name for f in COMPOSE_FILES} >= {"docker-compose-kafka.yml", "docker-compose-spark.yml"}


@pytest.mark.parametrize("compose_file", COMPOSE_FILES, ids=lambda f: f.name)
def test_compose_file_validates(compose_file):
    proc = compose("-f", str(compose_file.relative_to(ROOT)), "config", "-q")
    assert proc.returncode == 0, proc.stderr


def test_both_files_form_one_project_on_the_network_from_env():
    env = env_file()
    config = resolved(*COMPOSE_FILES)
    assert config["name"] == env["COMPOSE_PROJECT_NAME"]
    assert config["networks"]["default"]["name"] == env["DOCKER_NETWORK"]
    assert {"kafka", "kafka-init", "kafka-ui", "spark-master", "spark-worker", "spark-producer"} <= set(config["services"])


def test_images_come_from_env_and_none_is_bitnami():
    env = env_file()
    services = resolved(*COMPOSE_FILES)["services"]
    assert services["kafka"]["image"] == env["KAFKA_IMAGE"]
    assert services["kafka-ui"]["image"] == env["KAFKA_UI_IMAGE"]
    assert services["spark-master"]["image"] == services["spark-worker"]["image"] == env["SPARK_IMAGE"]
    assert services["spark-master"]["build"]["args"]["BASE_IMAGE"] == env["SPARK_BASE_IMAGE"]
    assert not any("bitnami" in s.get("image", "") for s in services.values())


def test_ports_are_published_on_the_bind_address_only():
    env = env_file()
    services = resolved(*COMPOSE_FILES)["services"]
    published = {(name, p["target"]): p for name, s in services.items() for p in s.get("ports", [])}
    assert all(p["host_ip"] == env["BIND_ADDRESS"] == "127.0.0.1" for p in published.values())
    assert published[("kafka", 9092)]["published"] == env["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]
    assert published[("kafka-ui", 8080)]["published"] == env["KAFKA_UI_PORT"]
    assert published[("spark-master", 8080)]["published"] == env["SPARK_MASTER_UI_PORT"]


def test_kafka_listeners_serve_the_network_and_the_host():
    kafka = resolved(*COMPOSE_FILES)["services"]["kafka"]
    advertised = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "PLAINTEXT://kafka:19092" in advertised and "PLAINTEXT_HOST://localhost:9092" in advertised
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["healthcheck"]["test"]
    ui = resolved(*COMPOSE_FILES)["services"]["kafka-ui"]
    assert ui["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "kafka:19092"
    assert ui["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_environment_overrides_win_over_env_file():
    config = resolved(
        *COMPOSE_FILES,
        overrides={
            "KAFKA_HOST_PORT": "19092",
            "BIND_ADDRESS": "0.0.0.0",
            "COMPOSE_PROJECT_NAME": "other",
            "DOCKER_NETWORK": "other-net",
            "KAFKA_IMAGE": "local/kafka:test",
        },
    )
    kafka = config["services"]["kafka"]
    assert config["name"] == "other" and config["networks"]["default"]["name"] == "other-net"
    assert kafka["image"] == "local/kafka:test"
    assert kafka["ports"][0]["host_ip"] == "0.0.0.0" and kafka["ports"][0]["published"] == "19092"
    assert "PLAINTEXT_HOST://localhost:19092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


# ---------------------------------------------------------------- .env in the containers


def make_list(name: str) -> list[str]:
    """A `NAME := ...` list of docker/docker.mk (continuation lines joined)."""
    text = (ROOT / "docker" / "docker.mk").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith(f"{name} :="))
    return line.split(":=", 1)[1].split()


CONTAINER_OWN = set(make_list("CONTAINER_OWN_SETTINGS"))
SPARK_SERVICES = ("spark-master", "spark-worker", "spark-producer")


def test_the_containers_own_settings_are_set_by_the_compose_files_and_written_in_dot_env():
    """What the compose files set for the producer's and the job's containers is left out of
    what make hands them (an exec's -e wins over the service's environment), in every variant."""
    written = set(env_file())
    assert CONTAINER_OWN <= written, CONTAINER_OWN - written
    for extra in ([], [ROOT / "docker" / "compose-kafka-sasl-ssl.yml"]):
        services = resolved(*COMPOSE_FILES, *extra)["services"]
        for name in SPARK_SERVICES:
            environment = services[name]["environment"]
            assert set(environment) & written <= CONTAINER_OWN, (name, set(environment) & written - CONTAINER_OWN)
            assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
            assert environment["CHECKPOINT_DIR"].startswith("/opt/app/") and environment["PACKAGE_ZIP"].startswith("/opt/app/")
    assert services["spark-master"]["environment"]["SPARK_UI_ENABLED"] == "true"


FAKE_DOCKER = """#!/bin/sh
# docker for docker.mk's recipes: answers, and writes each compose command with the values of its -e names.
case "$1" in info) exit 0 ;; compose) [ "$2" = version ] && exit 0 ;; esac
exec "$FAKE_DOCKER_PYTHON" -c '
import json, os, sys
args = sys.argv[1:]
names = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-e"]
print(json.dumps({"args": args, "env": {n: os.environ.get(n) for n in names}}))
' "$@" >> "$FAKE_DOCKER_LOG"
"""


def test_make_hands_every_setting_of_dot_env_to_the_producer_and_the_job(tmp_path):
    """make spark-produce / spark-consume-purchase RUNTIME=docker pass each name of .env with
    make's value (.env's, or the command line's or the environment's, which win), except the
    containers' own; the job runs as locally (python, so its driver JVM gets the settings)."""
    dot_env = env_file()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    # make reads .env itself: none of its names from the caller (make test exports them all)
    env = {k: v for k, v in os.environ.items() if k not in dot_env and not k.startswith("MAKE") and k != "MFLAGS"}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_DOCKER_LOG=str(log), FAKE_DOCKER_PYTHON=sys.executable)
    env["WINDOW_SLIDE"] = "5 minutes"  # the environment wins over .env
    command = ["make", "--no-print-directory", "-o", "package", "RUNTIME=docker", "GROUP_BY=furniture"]
    proc = subprocess.run(
        [*command, "spark-produce", "spark-consume-purchase"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    (producer,) = [c for c in calls if "run" in c["args"]]
    (job,) = [c for c in calls if "exec" in c["args"]]
    assert producer["args"][producer["args"].index("spark-producer") + 1 :][:2] == ["python", "/opt/app/scripts/event_producer.py"]
    assert job["args"][job["args"].index("spark-master") + 1 :][:2] == ["python", "/opt/app/spark-scripts/purchase-aggregator.py"]
    expected = {name: value for name, value in dot_env.items() if name not in CONTAINER_OWN}
    expected.update(GROUP_BY="furniture", WINDOW_SLIDE="5 minutes")
    for call in (producer, job):
        assert call["env"] == expected
    for name in ("STATE_STORE", "SPARK_DRIVER_MEMORY", "SPARK_DRIVER_JAVA_OPTIONS", "EVENT_MAX_FUTURE_S", "DLQ_MAX_VALUE_BYTES"):
        assert job["env"][name] == dot_env[name] != "", name
