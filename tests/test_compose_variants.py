"""The secured and the three-broker compose variants (docs/cluster.md) resolve over the
two base files with .env, and say what the local runtime does: SASL_SSL listeners,
StandardAuthorizer, mounted certificates; three nodes in one quorum, replication factor 3."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_compose_config import COMPOSE, COMPOSE_FILES, resolved

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="no Docker Compose v2 (docker compose) installed: run `make compose-plugin`")


def test_secured_variant_adds_tls_scram_and_acls():
    services = resolved(*COMPOSE_FILES, ROOT / "docker" / "compose-kafka-sasl-ssl.yml")["services"]
    env = services["kafka"]["environment"]
    assert env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] == "CONTROLLER:SSL,INTERNAL:SSL,CLIENT:SASL_SSL,CLIENT_HOST:SASL_SSL"
    assert "PLAINTEXT" not in env["KAFKA_LISTENERS"] and env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer") and env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_SSL_PRINCIPAL_MAPPING_RULES"].replace("$$", "$") == "RULE:^CN=([^,]+)$/$1/,DEFAULT"  # config output re-escapes $
    for name in ("kafka", "kafka-init", "kafka-ui", "spark-master", "spark-worker", "spark-producer"):
        assert any(v["target"] == "/etc/kafka/secrets" and v.get("read_only") for v in services[name]["volumes"]), name
    assert services["spark-master"]["environment"]["KAFKA_SASL_USERNAME"] == "job"
    assert services["spark-producer"]["environment"]["KAFKA_SASL_USERNAME"] == "producer"
    assert "password=" not in str(services["spark-master"]["environment"])  # by file only


def test_cluster_variant_runs_three_nodes_in_one_quorum():
    services = resolved(
        *COMPOSE_FILES, ROOT / "docker" / "compose-kafka-cluster.yml", overrides={"KAFKA_2_HOST_PORT": "9102", "KAFKA_3_HOST_PORT": "9112"}
    )["services"]
    nodes = [services[n]["environment"] for n in ("kafka", "kafka-2", "kafka-3")]
    assert {e["KAFKA_NODE_ID"] for e in nodes} == {"1", "2", "3"}
    assert len({e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in nodes}) == 1 and len({e["CLUSTER_ID"] for e in nodes}) == 1
    assert all(e["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3" and e["KAFKA_MIN_INSYNC_REPLICAS"] == "2" for e in nodes)
    assert "--replication-factor 3 --config min.insync.replicas=2" in " ".join(services["kafka-init"]["command"])
    assert {p["published"] for n in ("kafka", "kafka-2", "kafka-3") for p in services[n]["ports"]} == {"9092", "9102", "9112"}
