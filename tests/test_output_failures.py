"""The job's own Kafka outputs (results and metrics topics) never fail silently: every
record's outcome is checked when a batch flushes. A refusal no restart can heal ends the job
with one line naming the topic, the cause and the fix; a failure a restart heals (too few
in-sync replicas) raises the kind the job restarts from its checkpoint on, and the batch
written again is all there."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pyspark.sql import Row
from test_failures import Captured, py4j_wrapped

from purchase_analytics.failures import OutputRefused, OutputRetriable, classify_failure
from purchase_analytics.kafka_client import KafkaSecurity, batch_bytes
from purchase_analytics.reference import read_topic
from purchase_analytics.runtime.kafka_broker import KafkaCluster, create_topics
from purchase_analytics.runtime.processes import free_port, wait_until
from purchase_analytics.sinks import KafkaPublisher, KafkaResultsSink, read_results_topic, window_record

from conftest import KAFKA_JARS, TEST_JVM_OPTIONS, JobThread, expected_totals, job_config, run_aggregator, send_raw
from malformed import VALID

CONFIG = job_config("--checkpoint", "/data/ckpt", "--topic", "purchases")


def windows(count: int, scale: int = 1) -> list[Row]:
    """Rows as Spark hands them to the sinks."""
    start, width = datetime(2026, 1, 2, 10, 0, tzinfo=timezone.utc), timedelta(minutes=10)
    return [
        Row(window_start=start + i * width, window_end=start + (i + 1) * width, total_purchase=1000 * (i + 1) * scale, orders=i + scale)
        for i in range(count)
    ]


def expected(rows: list[Row], batch_id: int) -> dict[str, tuple[int, int]]:
    return {r["window_start"]: (r["total_purchase"], r["orders"]) for r in (window_record(row, batch_id) for row in rows)}


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_a_record_larger_than_the_results_topic_takes_ends_the_job_with_one_line(kafka):
    small, normal = name("results"), name("results")
    create_topics(kafka, {small: 1, normal: 1}, configs={small: {"max.message.bytes": "20"}})
    publisher = KafkaPublisher(kafka, KafkaSecurity())
    try:
        rows = windows(3)
        with pytest.raises(OutputRefused) as refused:
            KafkaResultsSink(publisher, small).write(0, rows)
        first = window_record(rows[0], 0)
        size = batch_bytes(first["window_start"].encode(), json.dumps(first).encode())
        line = str(refused.value)
        print(f"error: {line}")
        assert line == (
            f"results topic '{small}' refused a record of {size} bytes: larger than the topic's max.message.bytes (20); "
            f"raise it with kafka-configs.sh --bootstrap-server {kafka} --alter --entity-type topics --entity-name {small} "
            f"--add-config max.message.bytes=1048588, or set --results-topic to a topic that takes it"
        )
        # What the job prints, raised in its process or in a foreachBatch handler (through py4j)
        assert classify_failure(refused.value, CONFIG) == line
        assert classify_failure(Captured(py4j_wrapped(refused.value)), CONFIG) == line

        # The publisher writes on (its producer is replaced: an idempotent producer that had
        # a batch refused refuses everything after it)
        KafkaResultsSink(publisher, normal).write(1, rows)
        assert read_results_topic(kafka, normal) == expected(rows, 1)
    finally:
        publisher.close()


def test_the_metrics_topic_refusing_a_record_names_the_metrics_topic(kafka):
    metrics, results = name("metrics"), name("results")
    create_topics(kafka, {metrics: 1}, configs={metrics: {"max.message.bytes": "20"}})
    config = job_config("--bootstrap-servers", kafka, "--metrics-topic", metrics, "--results-topic", results)
    publisher = KafkaPublisher.for_job(config)
    try:
        publisher.send(metrics, {"batch_id": 0, "messages": 10})  # as job.ProgressReporter sends a batch's progress
        with pytest.raises(OutputRefused) as refused:
            publisher.flush()
        line = str(refused.value)
        assert line.startswith(f"metrics topic '{metrics}' refused a record of ")
        assert "larger than the topic's max.message.bytes (20)" in line and line.endswith("or set --metrics-topic to a topic that takes it")
        assert "\n" not in line
    finally:
        publisher.close()


def test_every_record_sent_to_a_normal_topic_is_written(kafka, new_topic):
    topic = new_topic(3)
    publisher = KafkaPublisher(kafka, KafkaSecurity())
    sink = KafkaResultsSink(publisher, topic)
    try:
        sink.write(0, windows(4))
        sink.write(0, windows(4))  # a replayed batch: the same keys and values
        sink.write(1, windows(6, scale=2))
        sink.write(2, [])  # a batch that changed no window
    finally:
        publisher.close()
    records = read_topic(kafka, topic)
    assert len(records) == 4 + 4 + 6
    assert read_results_topic(kafka, topic) == expected(windows(6, scale=2), 1)


@pytest.fixture
def cluster(tmp_path):
    ports = [(free_port(), free_port(), None) for _ in range(3)]
    cluster = KafkaCluster.create(KAFKA_JARS, tmp_path / "kafka-cluster", ports, heap="384m", jvm_options=TEST_JVM_OPTIONS)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.kafka
def test_too_few_in_sync_replicas_is_retriable_and_the_batch_written_again_is_all_there(cluster):
    """Replication 3, min.insync.replicas=2: with the partition's two followers stopped the
    leader refuses acks=all writes (NotEnoughReplicas). The publisher raises the kind the job
    restarts on; once the brokers are back, the batch written again is all in the topic."""
    topic = name("results")
    create_topics(cluster.bootstrap_servers, {topic: 1}, cluster.replication_factor, configs={topic: {"cleanup.policy": "compact"}})
    wait_until(lambda: cluster.in_sync(topic), 60, "the topic's replicas in sync")
    publisher = KafkaPublisher(cluster.bootstrap_servers, KafkaSecurity())
    sink = KafkaResultsSink(publisher, topic)
    try:
        sink.write(0, windows(3))
        leader = cluster.leader_of(topic)
        for node in (n for n in (1, 2, 3) if n != leader):
            # one after the other: the second's controlled shutdown leaves the partition leader alone in
            # the in-sync replicas (with both gone at once the quorum would be lost first)
            cluster.broker(node).stop()
        batch = windows(5, scale=3)
        with pytest.raises(OutputRetriable) as retriable:
            sink.write(1, batch)
        assert "NotEnoughReplicas" in str(retriable.value), retriable.value
        print(f"with the partition leader alone in sync: {type(retriable.value).__name__}: {retriable.value}")
        assert classify_failure(retriable.value, CONFIG) is None  # the job restarts from its checkpoint
        assert classify_failure(Captured(py4j_wrapped(retriable.value)), CONFIG) is None

        cluster.start()
        wait_until(lambda: cluster.in_sync(topic), 120, "the restarted brokers to catch up")
        sink.write(1, batch)  # the batch again, as the restarted job writes it
    finally:
        publisher.close()
    assert read_results_topic(cluster.bootstrap_servers, topic) == expected(batch, 1)


# ------------------------------------------------------------------ through the job


def test_the_job_ends_with_one_line_when_the_results_topic_refuses_its_records(kafka, new_topic, tmp_path):
    """The command line, as users run it: a results topic whose records may be 20 bytes at
    most ends the job with one line naming the topic and the cause, and a non-zero exit."""
    topic, results = new_topic(1), name("results")
    create_topics(kafka, {results: 1}, configs={results: {"max.message.bytes": "20"}})
    now = datetime.now(timezone.utc).timestamp()
    send_raw(kafka, topic, [(json.dumps({**VALID, "order_id": f"o{i}", "ts": now - 60}).encode(), 0) for i in range(5)])
    proc = run_aggregator(
        "--bootstrap-servers", kafka, "--topic", topic, "--checkpoint", str(tmp_path / "ckpt"), "--results-topic", results,
        "--dlq-topic", "", "--metrics-topic", "", "--no-console", "--available-now", check=False,
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith(f"error: results topic '{results}' refused a record of "), proc.stderr[-3000:]
    assert "max.message.bytes (20)" in errors[0]


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.kafka
def test_the_job_recovers_from_a_temporary_replica_loss_with_exact_totals(spark, cluster, tmp_path, monkeypatch):
    """The results topic's followers stop before the job's first batch (NotEnoughReplicas):
    the job restarts its queries from the checkpoint until they are back, and every
    window's final total is in the topic. (Records are given up on after 31 s here, not 60.)"""
    monkeypatch.setattr(KafkaPublisher, "DELIVERY_TIMEOUT_S", 31.0)  # the least kafka-python takes: its request timeout and linger
    topic, results = name("purchases"), name("results")
    create_topics(
        cluster.bootstrap_servers, {topic: 3, results: 1}, cluster.replication_factor, configs={results: {"cleanup.policy": "compact"}}
    )
    wait_until(lambda: cluster.in_sync(results), 60, "the results topic's replicas in sync")
    t0 = int(datetime.now(timezone.utc).timestamp()) // 600 * 600 - 7200
    events = [{**VALID, "order_id": f"r{i}", "price": 100 + i, "ts": t0 + 11 * i} for i in range(400)]
    send_raw(cluster.bootstrap_servers, topic, [(json.dumps(e).encode(), i % 3) for i, e in enumerate(events)])
    # the source's replicas in sync too: the stopped brokers hand their partitions to the one left
    wait_until(lambda: cluster.in_sync(topic), 60, "the source topic's replicas in sync")
    leader = cluster.leader_of(results)
    for node in (n for n in (1, 2, 3) if n != leader):
        cluster.broker(node).stop()
    config = job_config(
        "--bootstrap-servers", cluster.bootstrap_servers, "--topic", topic, "--checkpoint", str(tmp_path / "ckpt"),
        "--results-topic", results, "--dlq-topic", "", "--metrics-topic", "", "--no-console", "--max-offsets-per-trigger", "150",
    )  # fmt: skip
    job = JobThread(spark, config)
    job.start()
    wait_until(lambda: "restarting from the checkpoint" in job.out.getvalue(), 180, "the job to restart after NotEnoughReplicas")
    cluster.start()
    summary = job.result(300)
    assert summary.restarts >= 1 and f"not written to results topic '{results}'" in job.out.getvalue(), job.out.getvalue()
    assert read_results_topic(cluster.bootstrap_servers, results) == expected_totals(events)
