"""Killed processes, through the real entry points: the job SIGKILLed mid-stream three
times, the broker SIGKILLed mid-stream. Real broker, real Spark (a spark-submit child each).
Bad input, late and out-of-order data run in-process in test_job.py."""

from __future__ import annotations

import os
import signal

import pytest

from purchase_analytics.producer import EventGenerator
from purchase_analytics.runtime.kafka_broker import create_topics
from purchase_analytics.runtime.processes import wait_until
from purchase_analytics.sinks import read_json_lines_totals, read_results_db, read_results_topic

from conftest import (
    expected_totals,
    job_config,
    own_broker,
    produced_events,
    run_producer,
    run_queries,
    start_producer,
    start_streaming_job,
    wait_for_acknowledgements,
    wait_for_line,
)

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


def test_spark_job_killed_three_times_loses_and_doubles_nothing(spark, kafka, new_topic, tmp_path):
    topic = new_topic(3)
    common = ["--bootstrap-servers", kafka, "--topic", topic]
    results = f"results-{tmp_path.name}"
    job_args = [
        *common,
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--output-dir",
        str(tmp_path / "out"),
        "--results-topic",
        results,
        "--results-db",
        str(tmp_path / "results.db"),
        "--max-offsets-per-trigger",
        "500",
        "--trigger",
        "0 seconds",
    ]
    # 14 batches' worth at the first start: each run commits at least one and is killed mid-stream.
    run_producer(*common, "--rate", "0", "--count", "6000", "--seed", "21", "--late-fraction", "0.2", "--max-lateness-s", "600")
    db = tmp_path / "results.db"
    for kill in range(3):
        before = committed_batches(db)
        job = start_streaming_job(*job_args)
        try:
            wait_until(lambda before=before: committed_batches(db) > before, 180, "one more committed batch")
        finally:
            os.killpg(job.pid, signal.SIGKILL)  # python driver and its JVM, mid-stream
            job.wait()
        run_producer(*common, "--rate", "0", "--count", "1000", "--seed", str(30 + kill))  # more data while it is down
    # Catch up on what is left, in-process on the same checkpoint (the CLI restarts are above).
    run_queries(spark, job_config(*job_args[:-4], "--dlq-topic", "", "--no-console"))
    expected = expected_totals(produced_events(kafka, topic))
    assert sum(n for _, n in expected.values()) == 9000
    assert read_results_db(db) == expected
    assert read_json_lines_totals(tmp_path / "out") == expected
    assert read_results_topic(kafka, results) == expected  # replayed batches rewrote the same keys and values


def test_broker_killed_mid_stream_loses_no_acknowledged_event(tmp_path):
    broker = own_broker(tmp_path / "kafka")
    broker.start()
    try:
        topic, count = "purchases", 3000
        common = ["--bootstrap-servers", broker.bootstrap_servers, "--topic", topic]
        create_topics(broker.bootstrap_servers, {topic: 3})
        run_producer(*common, "--rate", "0", "--count", "100", "--seed", "98")
        db = tmp_path / "results.db"
        job = start_streaming_job(*common, "--checkpoint", str(tmp_path / "ckpt"), "--results-db", str(db), "--trigger", "1 second")
        producer = None
        try:
            wait_until(lambda: committed_batches(db) >= 1, 240, "the job to commit its first batch")  # the job is up
            producer = start_producer(
                *common,
                "--rate",
                "400",
                "--count",
                str(count),
                "--seed",
                "99",
                "--progress-interval-s",
                "1",
            )
            seen = wait_for_acknowledgements(producer)  # it is sending: for about 7 s at 400 events/s
            broker.kill()  # SIGKILL mid-stream: no controlled shutdown
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
            os.killpg(job.pid, signal.SIGINT)  # Ctrl-C in its terminal: a clean stop, not a traceback
            err = job.communicate(timeout=60)[1]
            assert job.returncode == 0 and "stopping (signal received)" in err and "Traceback" not in err, err[-3000:]
        finally:
            if producer and producer.poll() is None:
                producer.kill()
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGTERM)
                job.wait(timeout=60)
    finally:
        broker.stop()
