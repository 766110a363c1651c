"""Metrics and progress records are at least once: a job stopped after Spark committed its
batches and before it wrote their records writes them when it starts again, from the
checkpoint, with the figures the batches' own records carry. In-process, small."""

from __future__ import annotations

import io
import json
import uuid

from test_job import T0

from purchase_analytics.progress import JobSummary, metrics_key
from purchase_analytics.queries import WindowsHandler, start_queries, window_sinks
from purchase_analytics.reference import read_topic
from purchase_analytics.reporting import METRICS_WRITTEN, ProgressReporter, committed_batches
from purchase_analytics.sinks import KafkaPublisher

from conftest import job_args, run_queries, send_raw
from malformed import VALID

FIELDS = ("batch_id", "messages", "rejected", "valid", "dropped_late", "watermark", "end_offsets", "topic")


def messages() -> list[bytes]:
    """In order, on one partition, four a batch: events of one window; events 25 minutes later
    (the watermark moves past the first window's end); two more, with two of the first window
    that still count (Spark judges by the watermark of the batch before); then two of the first
    window that are late, and a bad message."""
    events = [T0 + 10 * i for i in range(4)] + [T0 + 1500 + i for i in range(4)] + [T0 + 1510, T0 + 1511, T0 + 5, T0 + 6]
    events += [T0 + 7, T0 + 8]
    values = [json.dumps({**VALID, "order_id": f"o{i}", "price": 100 + i, "ts": ts}).encode() for i, ts in enumerate(events)]
    return values + [b"{not json"]


def run_killed_before_its_records(spark, config) -> None:
    """The job's start and batches, then a stop after Spark committed them and before the
    job wrote any record: what a kill between the commit and the write leaves."""
    publisher = KafkaPublisher.for_job(config)
    handler = WindowsHandler(spark, config, window_sinks(config, publisher))
    ProgressReporter(handler, config, JobSummary(), publisher, io.StringIO())  # what the job does at its start
    queries = start_queries(spark, config, handler)
    try:
        for query in queries:
            query.processAllAvailable()
            query.awaitTermination(180)
    finally:
        for query in queries:
            query.stop()
        publisher.close()


def test_a_restart_writes_the_records_of_batches_committed_before_the_kill(spark, kafka, new_topic, tmp_path):
    topic = new_topic(1)
    send_raw(kafka, topic, [(value, 0) for value in messages()])
    records = {}
    for name in ("killed", "whole"):
        metrics = f"metrics-{uuid.uuid4().hex[:8]}"
        options = ("--max-offsets-per-trigger", "4", "--metrics-topic", metrics, "--progress-file", str(tmp_path / f"{name}.jsonl"))
        config = job_args(kafka, topic, tmp_path / name, *options)
        if name == "killed":
            run_killed_before_its_records(spark, config)
            assert read_topic(kafka, metrics) == [] if _exists(kafka, metrics) else True
        run_queries(spark, config)  # the restart (for "whole", the one run)
        committed = committed_batches(spark, config.checkpoint_dir)
        written = [json.loads(r.value) for r in read_topic(kafka, metrics)]
        assert sorted(metrics_key(r) for r in written) == sorted({metrics_key(r) for r in written})  # once each
        # every committed batch has its record (Spark's report of an idle trigger may add the next batch id's)
        assert set(committed) <= {r["batch_id"] for r in written} and len(committed) >= 3, name
        assert written == [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        noted = json.loads((tmp_path / name / "ckpt" / METRICS_WRITTEN).read_text())
        assert noted["batch_id"] == committed[-1], name  # not the id of a trigger that ran nothing
        records[name] = {r["batch_id"]: {k: r[k] for k in FIELDS} for r in written if r["batch_id"] in committed}
    assert sum(r["dropped_late"] for r in records["whole"].values()) == 2
    assert sum(r["rejected"] for r in records["whole"].values()) == 1
    assert records["killed"] == records["whole"]  # the recovered records say what the batches' own said


def _exists(kafka: str, topic: str) -> bool:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        return topic in consumer.topics()
    finally:
        consumer.close()
