"""runtime/local.py (RUNTIME=local) without starting anything: the broker shape the settings
ask for, the topics `make kafka` creates, and one clear line for settings or states that
cannot work. The state folder is a temp dir. Starting the real thing is `make run`'s and the
other tests' (test_kafka_ui.py, test_bad_input.py, test_dashboard.py)."""

from __future__ import annotations

import os
import socket

import pytest

from purchase_analytics.runtime import local, spark_standalone
from purchase_analytics.runtime.kafka_broker import KafkaBroker, KafkaCluster

from conftest import SETTINGS


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """The runtime's .data folder, moved to a temp dir."""
    monkeypatch.setattr(local, "DATA_DIR", tmp_path)
    monkeypatch.setattr(local, "SPARK_DIR", tmp_path / "spark")
    monkeypatch.setattr(spark_standalone, "SPARK_DIR", tmp_path / "spark")
    monkeypatch.setattr(local, "WEB_DIR", tmp_path / "web")
    return tmp_path


def settings(**overrides: str) -> dict[str, str]:
    return {**SETTINGS, **overrides}


def test_int_setting_names_the_setting_and_its_bad_value():
    assert local.int_setting({"N": "3"}, "N") == 3
    for raw in ("abc", "", "0"):
        with pytest.raises(RuntimeError, match=rf"^N={raw!r} \(from the environment or .env\) must be an integer >= 1$"):
            local.int_setting({"N": raw}, "N")


def test_one_plaintext_broker_from_the_settings(data_dir):
    broker = local.local_broker(settings(KAFKA_BOOTSTRAP_SERVERS="localhost:19092", KAFKA_CONTROLLER_PORT="19093"))
    assert isinstance(broker, KafkaBroker)
    assert (broker.port, broker.controller_port, broker.data_dir, broker.tls_dir) == (19092, 19093, data_dir / "kafka", None)
    assert broker.default_partitions == int(SETTINGS["KAFKA_TOPIC_PARTITIONS"])
    assert broker.jvm_options == tuple(SETTINGS["KAFKA_BROKER_JAVA_OPTIONS"].split()) != ()


def test_three_secured_brokers_step_their_ports(data_dir):
    cluster = local.local_broker(
        settings(
            KAFKA_BOOTSTRAP_SERVERS="localhost:19092",
            KAFKA_CONTROLLER_PORT="19093",
            KAFKA_BROKERS="3",
            KAFKA_CLUSTER_PORT_STEP="10",
            KAFKA_SECURITY="sasl_ssl",
        )
    )
    assert isinstance(cluster, KafkaCluster)
    assert [(b.port, b.controller_port, b.internal_port) for b in cluster.brokers] == [
        (19092, 19093, 19094),
        (19102, 19103, 19104),
        (19112, 19113, 19114),
    ]
    assert {b.tls_dir for b in cluster.brokers} == {data_dir / "kafka-cluster" / "tls"}
    assert {b.heap for b in cluster.brokers} == {SETTINGS["KAFKA_CLUSTER_HEAP"]}
    assert {b.jvm_options for b in cluster.brokers} == {tuple(SETTINGS["KAFKA_BROKER_JAVA_OPTIONS"].split())}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"KAFKA_SECURITY": "tls"}, "KAFKA_SECURITY='tls': use plaintext or sasl_ssl"),
        ({"KAFKA_BROKERS": "2"}, "KAFKA_BROKERS=2: use 1 (one broker) or 3 (a cluster)"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "KAFKA_BOOTSTRAP_SERVERS port=''"),
        ({"KAFKA_TOPIC_PARTITIONS": "three"}, "KAFKA_TOPIC_PARTITIONS='three'"),
    ],
)
def test_settings_that_cannot_work_are_one_line(data_dir, overrides, message):
    with pytest.raises(RuntimeError) as error:
        local.local_broker(settings(**overrides))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_make_kafka_topics_and_which_one_is_compacted():
    topics, configs = local.pipeline_topics(
        settings(
            KAFKA_TOPIC_NAME="p",
            KAFKA_TOPIC_PARTITIONS="4",
            KAFKA_DLQ_TOPIC_NAME="d",
            KAFKA_RESULTS_TOPIC_NAME="r",
            KAFKA_METRICS_TOPIC_NAME="m",
        )
    )
    assert topics == {"p": 4, "d": 1, "r": 1, "m": 1} and configs == {"r": {"cleanup.policy": "compact"}}
    topics, configs = local.pipeline_topics(
        settings(KAFKA_TOPIC_NAME="p", KAFKA_DLQ_TOPIC_NAME="", KAFKA_RESULTS_TOPIC_NAME="", KAFKA_METRICS_TOPIC_NAME="")
    )
    assert topics == {"p": int(SETTINGS["KAFKA_TOPIC_PARTITIONS"])} and configs == {}  # an empty name: no topic


def test_a_taken_broker_port_is_refused_before_anything_starts(data_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=rf"^port {port} is taken by another process; stop it or set KAFKA_BOOTSTRAP_SERVERS$"):
            local.kafka_start(settings(KAFKA_BOOTSTRAP_SERVERS=f"localhost:{port}"))
    assert not (data_dir / "kafka").exists()


def test_client_env_needs_a_secured_local_broker(data_dir):
    with pytest.raises(RuntimeError, match=r"no secured local broker: run `make kafka KAFKA_SECURITY=sasl_ssl` first"):
        local.client_env(settings(KAFKA_SECURITY="sasl_ssl"), "producer")
    tls = data_dir / "kafka" / "tls"
    tls.mkdir(parents=True)
    (tls / "producer.env").write_text("KAFKA_SASL_USERNAME=producer\n")
    assert local.client_env(settings(KAFKA_SECURITY="sasl_ssl"), "producer") == str(tls / "producer.env")


def test_the_master_url_is_the_local_master_while_it_runs(data_dir):
    assert local.spark_master_url(settings(SPARK_MASTER_URL="local[3]")) == "local[3]"
    (data_dir / "spark").mkdir()
    (data_dir / "spark" / "master.pid").write_text(str(os.getpid()))  # a live pid stands for the master
    assert local.spark_master_url(settings(SPARK_MASTER_PORT="7177")) == "spark://localhost:7177"


def test_status_says_what_runs(data_dir, capsys):
    local.status(settings(KAFKA_UI_PORT="18083", DASHBOARD_PORT="18084"))
    assert capsys.readouterr().out.splitlines() == [
        "kafka:  stopped",
        "spark master: stopped",
        "spark worker: stopped",
        "kafka-ui: stopped",
        "dashboard: stopped",
    ]
