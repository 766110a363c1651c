"""runtime/kafka_broker.py: the broker's configuration for one node, a cluster and a secured
node; the JVM command line; topic creation on the session broker; clear errors when the
jars are missing or the JVM dies. Starting, SIGKILLing and restarting real brokers is in
test_faults.py, test_cluster.py, test_secured.py and test_dashboard.py."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from purchase_analytics.admin import create_topics
from purchase_analytics.config import user_cache_dir
from purchase_analytics.runtime.kafka_broker import (
    KafkaBroker,
    KafkaCluster,
    class_archive_path,
    new_cluster_id,
    wait_until_ready,
)
from purchase_analytics.runtime.processes import read_pid

from conftest import KAFKA_JARS


def properties(broker: KafkaBroker) -> dict[str, str]:
    lines = broker._write_config().read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def test_one_node_is_broker_and_controller_on_localhost(tmp_path):
    props = properties(KafkaBroker(KAFKA_JARS, tmp_path, 19092, 19093, default_partitions=5))
    assert props["process.roles"] == "broker,controller" and props["controller.quorum.voters"] == "1@localhost:19093"
    assert props["listeners"] == "PLAINTEXT://localhost:19092,CONTROLLER://localhost:19093"
    assert props["log.dirs"] == str(tmp_path / "kraft-logs") and props["num.partitions"] == "5"
    assert props["offsets.topic.replication.factor"] == "1" and props["min.insync.replicas"] == "1"
    assert props["broker.session.timeout.ms"] == "4000"  # a restart after a crash waits this long
    assert "replica.lag.time.max.ms" not in props
    assert (tmp_path / "log4j2.properties").read_text().count(str(tmp_path / "logs" / "kafka.log")) == 1


def test_a_cluster_shares_one_quorum_and_one_id_and_replicates_three_times(tmp_path):
    ports = [(29092, 29093, None), (29102, 29103, None), (29112, 29113, None)]
    cluster = KafkaCluster.create(KAFKA_JARS, tmp_path, ports, jvm_options=("-XX:+UseSerialGC",))
    nodes = [properties(b) for b in cluster.brokers]
    assert [n["node.id"] for n in nodes] == ["1", "2", "3"]
    assert {n["controller.quorum.voters"] for n in nodes} == {"1@localhost:29093,2@localhost:29103,3@localhost:29113"}
    assert all(n["default.replication.factor"] == "3" and n["min.insync.replicas"] == "2" for n in nodes)
    assert all(n["broker.session.timeout.ms"] == "4000" and n["replica.lag.time.max.ms"] == "5000" for n in nodes)  # seconds, not 30
    assert len({b.cluster_id for b in cluster.brokers}) == 1
    assert KafkaCluster.create(KAFKA_JARS, tmp_path, ports).brokers[0].cluster_id == cluster.brokers[0].cluster_id  # kept on disk
    assert cluster.bootstrap_servers == "localhost:29092,localhost:29102,localhost:29112"
    assert all(b.jvm_options == ("-XX:+UseSerialGC",) for b in cluster.brokers)


def test_a_secured_node_listens_for_clients_with_sasl_ssl_and_for_brokers_with_tls(tmp_path):
    broker = KafkaBroker(KAFKA_JARS, tmp_path, 19092, 19093, tls_dir=tmp_path / "tls", internal_port=19094)
    props = properties(broker)
    assert props["listeners"] == "CLIENT://localhost:19092,INTERNAL://localhost:19094,CONTROLLER://localhost:19093"
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
    assert props["auto.create.topics.enable"] == "false"
    assert broker.admin_bootstrap == "localhost:19094" and broker.admin_security().protocol == "SSL"


def test_the_jvm_command_line_has_the_heap_and_the_chosen_options(tmp_path):
    default = KafkaBroker(KAFKA_JARS, tmp_path, heap="384m")._java("kafka.Kafka", "server.properties")
    assert default[1:3] == ["-Xmx384m", "-Xms256m"] and default[-2:] == ["kafka.Kafka", "server.properties"]
    assert not any(option.startswith("-XX:+Use") for option in default)  # none given: the JDK's defaults
    tuned = KafkaBroker(KAFKA_JARS, tmp_path, jvm_options=("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"))._java("kafka.Kafka")
    assert tuned[3:5] == ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
    with pytest.raises(RuntimeError, match=r"Kafka jars are missing in .*; run `make jars`"):
        KafkaBroker(tmp_path / "no-jars", tmp_path)._java("kafka.Kafka")


def test_the_class_archive_is_one_per_jars_folder_and_jdk_and_mapped_when_there(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    archive = class_archive_path(KAFKA_JARS)
    assert archive.parent == user_cache_dir() / "jvm" and archive.name.startswith("kafka-")
    assert class_archive_path(tmp_path) != archive  # other jars, another archive
    broker = KafkaBroker(KAFKA_JARS, tmp_path, jvm_options=("-XX:+UseSerialGC",))
    assert not any("SharedArchiveFile" in option for option in broker._java("kafka.Kafka"))  # none yet: starts as before
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    command = broker._java("kafka.Kafka")
    assert command[3:6] == ["-XX:+UseSerialGC", f"-XX:SharedArchiveFile={archive}", "-Xlog:cds*=off"]
    assert command[command.index("-cp") + 1] == str(KAFKA_JARS.resolve() / "*")  # the archive's own class path
    off = KafkaBroker(KAFKA_JARS, tmp_path, class_archive=False)._java("kafka.Kafka")
    assert not any("SharedArchiveFile" in option for option in off)


def test_the_session_broker_maps_the_class_archive(broker):
    """`make test` builds the archive first (make setup), so the tests' brokers map it."""
    archive = class_archive_path(KAFKA_JARS)
    assert archive.is_file(), f"no Kafka class archive at {archive}: make class-archive builds it"
    assert str(archive) in Path(f"/proc/{read_pid(broker.pid_file)}/maps").read_text()


def test_cluster_ids_are_16_random_bytes_in_url_safe_base64():
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 22 and uuid.UUID(bytes=base64.urlsafe_b64decode(i + "==")) for i in ids)


def test_a_jvm_that_dies_during_start_up_is_reported_with_its_log(tmp_path):
    log = tmp_path / "kafka.log"
    log.write_text("[x] ERROR Exiting Kafka due to fatal exception (kafka.Kafka$)\n")
    with pytest.raises(RuntimeError, match=r"Kafka exited during start-up; last log lines:\n.*Exiting Kafka due to fatal exception"):
        wait_until_ready("localhost:1", 30, lambda: False, log)


def test_create_topics_creates_only_what_is_missing_with_its_configs(broker, kafka):
    from confluent_kafka.admin import AdminClient, ConfigResource

    name = f"t-{uuid.uuid4().hex[:12]}"
    assert create_topics(kafka, {name: 4, f"{name}-compact": 1}, configs={f"{name}-compact": {"cleanup.policy": "compact"}}) == [
        name,
        f"{name}-compact",
    ]
    assert create_topics(kafka, {name: 4}) == []  # already there
    admin = AdminClient({"bootstrap.servers": kafka})
    assert len(admin.list_topics(name, timeout=10).topics[name].partitions) == 4
    [described] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, f"{name}-compact")]).values()
    assert described.result()["cleanup.policy"].value == "compact"
    assert broker.start() is False  # it runs already: start only waits until it answers
