"""The compose files validate with .env (`docker compose config`, no daemon needed), and
what they resolve to keeps the Docker runtime's promises: images from .env, ports on
127.0.0.1, one network, environment overrides winning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

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


def env_file() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value
    return values


def compose(*args: str, overrides: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # A bare environment: only .env (and the given overrides) decide the result, plus
    # KAFKA_HOST_PORT, which docker/docker.mk derives from KAFKA_BOOTSTRAP_SERVERS.
    env = {k: os.environ[k] for k in ("PATH", "HOME", "DOCKER_CONFIG") if k in os.environ}
    env["KAFKA_HOST_PORT"] = env_file()["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]
    env.update(overrides or {})
    return subprocess.run([*COMPOSE, "--env-file", ".env", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


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
