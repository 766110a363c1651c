"""Shared fixtures: one real Kafka broker and one local SparkSession per session, uuid topic
names per test, and the harness that runs the job's own queries in-process.

Tests are marked by what they start (pyproject.toml): `kafka` (the session broker, or one
of their own), `spark` (a JVM: the session's SparkSession or a spark-submit child) and
`slow` (command-line end to end, fault injection). Fixtures mark their users themselves.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from purchase_analytics.config import AggregatorConfig, load_settings, parse_aggregator_config
from purchase_analytics.job import BatchHandler, JobSummary, ProgressReporter, ensure_output_topics, start_queries, window_sinks
from purchase_analytics.reference import read_topic, window_totals
from purchase_analytics.runtime.kafka_broker import KafkaBroker, create_topics
from purchase_analytics.runtime.processes import free_port
from purchase_analytics.sinks import KafkaPublisher

ROOT = Path(__file__).resolve().parent.parent
AGGREGATOR = ROOT / "spark-scripts" / "purchase-aggregator.py"
PRODUCER = ROOT / "scripts" / "event_producer.py"
KAFKA_JARS = ROOT / ".cache" / "jars" / "kafka"
# .env alone, so the tests do not depend on the caller's environment.
SETTINGS = load_settings(environ={})

FIXTURE_MARKS = {"kafka": "kafka", "broker": "kafka", "new_topic": "kafka", "spark": "spark"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & FIXTURE_MARKS.keys():
            item.add_marker(FIXTURE_MARKS[fixture])
    # The slow files first (the sort is stable): `make test` hands whole files to two workers
    # in this order (--no-loadscope-reorder), so the longest ones start at once, side by side.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A real single-node KRaft broker from the project's own runtime code."""
    broker = KafkaBroker(KAFKA_JARS, tmp_path_factory.mktemp("kafka"), free_port(), free_port())
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
    """One local SparkSession for every in-process test, with the Kafka connector jars."""
    from purchase_analytics.spark_session import SparkConfig, create_spark_session

    config = parse_aggregator_config([], SETTINGS)
    session = create_spark_session(
        "tests", "local[2]", config.shuffle_partitions, config.session_timezone, SparkConfig.from_settings(SETTINGS)
    )
    yield session
    session.stop()


def job_config(*args: str) -> AggregatorConfig:
    """The aggregator's configuration from its command-line options and .env, as the CLI builds it."""
    return parse_aggregator_config([*args, "--available-now"], SETTINGS)


def job_args(kafka: str, topic: str, tmp_path, *extra: str):
    """The aggregator's configuration for `topic`: checkpoint and JSON lines under tmp_path,
    no console table, no dead-letter query unless `extra` names one."""
    checkpoint, out = str(tmp_path / "ckpt"), str(tmp_path / "out")
    return job_config(
        "--bootstrap-servers",
        kafka,
        "--topic",
        topic,
        "--checkpoint",
        checkpoint,
        "--output-dir",
        out,
        "--dlq-topic",
        "",
        "--no-console",
        *extra,
    )


def run_queries(spark, config: AggregatorConfig, timeout_s: float = 180) -> JobSummary:
    """The job's own query (`job.start_queries`, available-now trigger) on the shared
    session: wait until all available input is processed, stop them in any case, and fold
    their progress into a JobSummary with the job's own reporter (results and metrics
    topics and the progress file included)."""
    assert config.available_now, "in-process runs must end by themselves"
    ensure_output_topics(config)
    publisher = KafkaPublisher(config.bootstrap_servers, config.security) if (config.results_topic or config.metrics_topic) else None
    summary = JobSummary()
    handler = BatchHandler(spark, config, window_sinks(config, publisher))
    reporter = ProgressReporter(handler, config, summary, publisher, io.StringIO())
    queries = start_queries(spark, config, handler)
    try:
        for query in queries:
            query.processAllAvailable()
            assert query.awaitTermination(timeout_s), f"query {query.name} did not finish in {timeout_s:.0f}s"
    finally:
        for query in queries:
            query.stop()
        reporter.report(queries[0])
        if publisher:
            publisher.close()
    return summary


def run_aggregator(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """The real entry point, as `make spark-consume-purchase` runs it."""
    proc = subprocess.run(
        [sys.executable, str(AGGREGATOR), "--master", "local[2]", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"aggregator exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def start_streaming_job(*args: str) -> subprocess.Popen:
    """The aggregator command line in the background, in its own process group (kill it with
    os.killpg), without the console table and the dead-letter query; stderr is piped."""
    return subprocess.Popen(
        [sys.executable, str(AGGREGATOR), "--master", "local[2]", "--no-console", "--dlq-topic", "", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )


def start_producer(*args: str) -> subprocess.Popen:
    """The producer command line in the background; stdout and stderr together in one pipe."""
    return subprocess.Popen([sys.executable, str(PRODUCER), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def run_producer(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(PRODUCER), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"producer exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def send_raw(bootstrap: str, topic: str, values: list[tuple[bytes | None, int]]) -> None:
    """Send exact bytes (value, partition); None is a tombstone (needs a key)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, (value, partition) in enumerate(values):
        producer.send(topic, value=value, key=f"k{i}".encode(), partition=partition)
    producer.flush()
    producer.close()


def expected_totals(events: list[dict], window_s: int = 600) -> dict[str, tuple[int, int]]:
    """Per-window (total_purchase, orders) computed in plain Python, independent of Spark."""
    return window_totals(events, window_s)


def produced_events(bootstrap: str, topic: str) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(bootstrap, topic)]
