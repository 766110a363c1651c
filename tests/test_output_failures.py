"""The job's own Kafka outputs (results and metrics topics) never fail silently: every
record's outcome is checked when a batch flushes. A refusal no restart can heal ends the job
with one line naming the topic, the cause and the fix. (A failure a restart heals, too few
in-sync replicas, needs three brokers: test_cluster.py.)"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pyspark.sql import Row
from readers import read_results_topic
from test_failures import Captured, py4j_wrapped

from purchase_analytics.admin import create_topics
from purchase_analytics.failures import JobFailed, OutputRefused, classify_failure
from purchase_analytics.kafka_client import KafkaSecurity, batch_bytes
from purchase_analytics.records import window_record
from purchase_analytics.reference import read_topic
from purchase_analytics.sinks import KafkaPublisher, KafkaResultsSink

from conftest import JobThread, job_config, send_raw
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
        publisher.send(metrics, {"batch_id": 0, "messages": 10})  # as reporting.ProgressReporter sends a batch's progress
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


# ------------------------------------------------------------------ through the job


def test_the_job_ends_with_one_line_when_the_results_topic_refuses_its_records(spark, kafka, new_topic, tmp_path):
    """The job's own loop, as the command line runs it: a results topic whose records may be
    20 bytes at most ends the job (JobFailed, which the command line prints as its one
    `error:` line and exits 1) naming the topic and the cause, without a restart."""
    topic, results = new_topic(1), name("results")
    create_topics(kafka, {results: 1}, configs={results: {"max.message.bytes": "20"}})
    now = datetime.now(timezone.utc).timestamp()
    send_raw(kafka, topic, [(json.dumps({**VALID, "order_id": f"o{i}", "ts": now - 60}).encode(), 0) for i in range(5)])
    config = job_config(
        "--bootstrap-servers", kafka, "--topic", topic, "--checkpoint", str(tmp_path / "ckpt"), "--results-topic", results,
        "--dlq-topic", "", "--metrics-topic", "", "--no-console",
    )  # fmt: skip
    job = JobThread(spark, config)
    job.start()
    with pytest.raises(JobFailed) as failed:
        job.result()
    line = str(failed.value)
    assert line.startswith(f"results topic '{results}' refused a record of ") and "max.message.bytes (20)" in line
    assert "\n" not in line and "restarting" not in job.out.getvalue(), job.out.getvalue()
