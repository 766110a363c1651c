"""Shared fixtures: one real Kafka broker per session (free ports, temporary data dir),
one local SparkSession for the static-DataFrame tests, uuid topic names per test."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from purchase_analytics.runtime.kafka_broker import KafkaBroker, create_topics  # noqa: E402
from purchase_analytics.reference import read_topic, window_totals  # noqa: E402
from purchase_analytics.runtime.processes import free_port  # noqa: E402

AGGREGATOR = ROOT / "spark-scripts" / "purchase-aggregator.py"
PRODUCER = ROOT / "scripts" / "event_producer.py"


def pytest_collection_modifyitems(items):
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A real single-node KRaft broker from the project's own runtime code."""
    broker = KafkaBroker(ROOT / ".cache" / "jars" / "kafka", tmp_path_factory.mktemp("kafka"), free_port(), free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka(broker) -> str:
    return broker.bootstrap_servers


@pytest.fixture
def new_topic(kafka):
    """Factory: a fresh uuid-named topic (and its partitions) per call."""
    def make(partitions: int = 3) -> str:
        name = f"source-{uuid.uuid4().hex[:12]}"
        create_topics(kafka, {name: partitions})
        return name
    return make


@pytest.fixture(scope="session")
def spark():
    from purchase_analytics.spark_session import create_spark_session

    session = create_spark_session("tests", "local[2]", shuffle_partitions=2)
    yield session
    session.stop()


def run_aggregator(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """The real entry point, as `make spark-consume-purchase` runs it."""
    proc = subprocess.run([sys.executable, str(AGGREGATOR), "--master", "local[2]", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"aggregator exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def run_producer(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(PRODUCER), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"producer exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def expected_totals(events: list[dict], window_s: int = 600) -> dict[str, tuple[int, int]]:
    """Per-window (total_purchase, orders) computed in plain Python, independent of Spark."""
    return window_totals(events, window_s)


def produced_events(bootstrap: str, topic: str) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(bootstrap, topic)]
