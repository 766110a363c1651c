"""Killed processes: the job's command line SIGKILLed mid-stream, the broker SIGKILLed
mid-stream under the job's own loop (in-process on the shared session). Real broker, real
Spark. Bad input, late and out-of-order data run in-process in test_job.py."""

from __future__ import annotations

import json
import os
import signal

import pytest
from readers import read_results_db, read_results_topic

from purchase_analytics.admin import create_topics
from purchase_analytics.producer import EventGenerator
from purchase_analytics.reference import read_topic
from purchase_analytics.reporting import committed_batches as committed_batch_ids
from purchase_analytics.runtime.processes import wait_until
from purchase_analytics.sinks import read_json_lines_totals

from conftest import (
    JobThread,
    expected_totals,
    job_config,
    own_broker,
    produced_events,
    run_producer,
    run_queries,
    send_raw,
    start_producer,
    start_streaming_job,
    wait_for_acknowledgements,
    wait_for_line,
)
from malformed import MALFORMED

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.spark]


def committed_batches(db) -> int:
    import sqlite3

    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM committed_batches").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def invalid_messages(count: int) -> list[tuple[bytes | None, int]]:
    """`count` malformed values (tests/malformed.py, round robin), spread over 3 partitions."""
    return [(MALFORMED[i % len(MALFORMED)][0], i % 3) for i in range(count)]


def dead_letter_sources(kafka: str, dlq: str) -> list[tuple[int, int]]:
    """The (partition, offset) of each source message the dead-letter topic holds, copies included."""
    return [(int(dict(r.headers)["source_partition"]), int(dict(r.headers)["source_offset"])) for r in read_topic(kafka, dlq)]


def test_spark_job_killed_mid_stream_loses_and_doubles_nothing(spark, kafka, new_topic, tmp_path):
    """The command line SIGKILLed (driver and JVM) after a committed batch, more data sent
    while it is down, then the same checkpoint run to the end: every output holds the exact
    totals, every invalid message is in the dead-letter topic (at least once: a batch that
    ran again writes its dead letters again, with the same source coordinates), and every
    committed batch has its metrics record (written again at the restart when the kill came
    between Spark's commit and the record)."""
    topic, dlq, metrics = new_topic(3), f"dead-letters-{tmp_path.name}", f"metrics-{tmp_path.name}"
    common = ["--bootstrap-servers", kafka, "--topic", topic]
    results = f"results-{tmp_path.name}"
    db = tmp_path / "results.db"
    outputs = ["--checkpoint", str(tmp_path / "ckpt"), "--output-dir", str(tmp_path / "out"), "--results-topic", results]
    outputs += ["--results-db", str(db), "--dlq-topic", dlq, "--metrics-topic", metrics, "--max-offsets-per-trigger", "500"]
    # 5 batches' worth at the start: it commits one and is killed mid-stream, well before the last.
    run_producer(*common, "--rate", "0", "--count", "2000", "--seed", "21", "--late-fraction", "0.2", "--max-lateness-s", "600")
    send_raw(kafka, topic, invalid_messages(60))
    job = start_streaming_job(*common, *outputs, "--trigger", "0 seconds")
    try:
        wait_until(lambda: committed_batches(db) >= 1, 180, "a committed batch")
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # python driver and its JVM, mid-stream
        job.wait()
    assert committed_batches(db) < 5, "the job read everything before the kill"
    run_producer(*common, "--rate", "0", "--count", "700", "--seed", "30")  # more data while it is down
    send_raw(kafka, topic, invalid_messages(30))
    # Catch up on what is left, in-process on the same checkpoint.
    run_queries(spark, job_config(*common, *outputs, "--no-console"))
    records = read_topic(kafka, topic)
    malformed = {payload for payload, _ in MALFORMED}
    invalid = {(r.partition, r.offset) for r in records if r.value in malformed}
    expected = expected_totals([json.loads(r.value) for r in records if r.value not in malformed])
    assert sum(n for _, n in expected.values()) == 2700
    assert read_results_db(db) == expected
    assert read_json_lines_totals(tmp_path / "out") == expected
    assert read_results_topic(kafka, results) == expected  # replayed batches rewrote the same keys and values
    assert len(invalid) == 90
    assert set(dead_letter_sources(kafka, dlq)) == invalid  # each invalid message, none lost
    committed = committed_batch_ids(spark, str(tmp_path / "ckpt"))
    recorded = {json.loads(r.value)["batch_id"] for r in read_topic(kafka, metrics)}
    assert len(committed) >= 6 and set(committed) <= recorded, (committed, sorted(recorded))


def test_broker_killed_mid_stream_loses_no_acknowledged_event(spark, tmp_path):
    """The broker SIGKILLed while the producer's command line sends and the job's own loop
    reads: the producer says the broker is away and delivers every event once it is back,
    and the job's totals are exact without a restart by hand."""
    broker = own_broker(tmp_path / "kafka")
    broker.start()
    try:
        topic, count = "purchases", 1000
        common = ["--bootstrap-servers", broker.bootstrap_servers, "--topic", topic]
        create_topics(broker.bootstrap_servers, {topic: 3})
        run_producer(*common, "--rate", "0", "--count", "100", "--seed", "98")
        db = tmp_path / "results.db"
        config = job_config(
            *common, "--checkpoint", str(tmp_path / "ckpt"), "--results-db", str(db), "--trigger", "1 second",
            "--no-console", "--dlq-topic", "", available_now=False,
        )  # fmt: skip
        job = JobThread(spark, config)
        job.start()
        producer = None
        try:
            wait_until(lambda: committed_batches(db) >= 1, 240, "the job to commit its first batch")  # the job is up
            producer = start_producer(*common, "--rate", "300", "--count", str(count), "--seed", "99", "--progress-interval-s", "1")
            seen = wait_for_acknowledgements(producer)  # it is sending, for about two seconds more
            broker.kill()  # SIGKILL mid-stream: no controlled shutdown
            assert producer.poll() is None, seen  # the kill came before the producer's last event
            seen += wait_for_line(producer, "down?")  # the producer noticed the outage
            broker.start()  # same data directory
            out = seen + producer.communicate(timeout=300)[0]
            assert f"done: sent {count}, acknowledged {count}, failed 0, pending 0" in out, out
            assert "is the broker at" in out and "down?" in out  # the outage was reported while it lasted
            ids = []
            for seed, n in ((98, 100), (99, count)):
                generator = EventGenerator(seed=seed)
                ids += [generator.next_event().order_id for _ in range(n)]
            stored = produced_events(broker.bootstrap_servers, topic)
            assert sorted(e["order_id"] for e in stored) == sorted(ids)  # every acknowledged event, exactly once
            expected = expected_totals(stored)
            wait_until(lambda: read_results_db(db) == expected, 240, "the job to catch up after the broker restart")
            assert job.is_alive(), job.out.getvalue()[-3000:]
        finally:
            if producer and producer.poll() is None:
                producer.kill()
            job.signals.stop.set()  # what SIGTERM does to the command line
        summary = job.result(120)
        assert "stopping (signal received)" in job.out.getvalue() and summary.messages == 100 + count
    finally:
        broker.stop()
