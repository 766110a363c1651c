"""Correctness under bad input, late data, out-of-order events and killed processes.
Real broker, real Spark, through the real entry points."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import AGGREGATOR, PRODUCER, ROOT, expected_totals, produced_events, read_topic, run_aggregator, run_producer
from malformed import MALFORMED, VALID
from purchase_analytics.producer import EventGenerator
from purchase_analytics.runtime.kafka_broker import KafkaBroker, create_topics
from purchase_analytics.runtime.processes import free_port, wait_until
from purchase_analytics.sinks import read_json_lines_totals, read_results_db, read_results_topic

NOW = int(time.time())
T0 = NOW - NOW % 600 - 6 * 3600  # a window boundary a few hours ago


def send_raw(bootstrap: str, topic: str, values: list[tuple[bytes | None, int]]) -> None:
    """Send exact bytes (value, partition); None is a tombstone (needs a key)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, (value, partition) in enumerate(values):
        producer.send(topic, value=value, key=f"k{i}".encode(), partition=partition)
    producer.flush()
    producer.close()


def event(price: int, ts: float, order_id: str = "o") -> bytes:
    return json.dumps({**VALID, "order_id": order_id, "price": price, "ts": ts}).encode()


def test_malformed_messages_go_to_the_dead_letter_topic_and_totals_stay_exact(kafka, new_topic, tmp_path):
    topic, dlq = new_topic(3), new_topic(1)
    values, valid = [], []
    for i, (payload, _) in enumerate(MALFORMED):
        good = {**VALID, "order_id": f"v{i}", "price": 100 + i, "ts": T0 + 37 * i}
        valid.append(good)
        values += [(json.dumps(good).encode(), i % 3), (payload, (i + 1) % 3)]
    send_raw(kafka, topic, values)

    proc = run_aggregator("--bootstrap-servers", kafka, "--topic", topic, "--dlq-topic", dlq, "--available-now",
                          "--checkpoint", str(tmp_path / "ckpt"), "--output-dir", str(tmp_path / "out"), "--no-console")
    assert f"{len(MALFORMED)} rejected" in proc.stderr
    assert read_json_lines_totals(tmp_path / "out") == expected_totals(valid)

    dead = read_topic(kafka, dlq)
    assert len(dead) == len(MALFORMED)
    sources = {(int(dict(r.headers)["source_partition"]), int(dict(r.headers)["source_offset"])): r for r in dead}
    by_payload = {}
    for record in read_topic(kafka, topic):
        if (record.partition, record.offset) in sources:
            by_payload.setdefault(record.value, []).append(sources[(record.partition, record.offset)])
    for payload, reason in MALFORMED:
        letters = by_payload.pop(payload)
        letter = letters.pop()
        assert letter.value == payload  # the original bytes
        assert dict(letter.headers)["rejection_reason"].decode().startswith(reason)
        assert dict(letter.headers)["source_topic"].decode() == topic
        if letters:
            by_payload[payload] = letters


def test_late_events_follow_the_watermark(kafka, new_topic, tmp_path):
    """10-minute windows, 5-minute watermark, one message per micro-batch so the
    watermark moves between them. Spark filters late rows with the watermark of the
    batch before (it moves at the end of a batch), hence the second message."""
    topic = new_topic(1)
    send_raw(kafka, topic, [
        (event(1000, T0 + 1300, "a"), 0),  # window [T0+1200, T0+1800); watermark becomes T0+1000
        (event(16000, T0 + 1300, "a2"), 0),  # after this batch, late rows are judged by T0+1000
        (event(2000, T0 + 100, "b"), 0),  # window ends T0+600 <= watermark: dropped
        (event(4000, T0 + 700, "c"), 0),  # late, but its window [T0+600, T0+1200) is still open: counted
        (event(8000, T0 + 1200, "d"), 0),  # exactly on a boundary: the later window
    ])
    proc = run_aggregator("--bootstrap-servers", kafka, "--topic", topic, "--available-now", "--max-offsets-per-trigger", "1",
                          "--watermark", "5 minutes", "--checkpoint", str(tmp_path / "ckpt"), "--output-dir", str(tmp_path / "out"),
                          "--dlq-topic", "", "--no-console")
    iso = lambda s: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))  # noqa: E731
    assert read_json_lines_totals(tmp_path / "out") == {iso(T0 + 600): (4000, 1), iso(T0 + 1200): (25000, 3)}
    assert "1 dropped as late by the watermark" in proc.stderr


def test_out_of_order_events_across_partitions(kafka, new_topic, tmp_path):
    topic = new_topic(3)
    import random

    rng = random.Random(5)
    events = [{**VALID, "order_id": f"o{i}", "price": rng.randint(100, 5000), "ts": T0 + rng.randint(0, 1799) + rng.random()} for i in range(600)]
    send_raw(kafka, topic, [(json.dumps(e).encode(), rng.randrange(3)) for e in events])  # shuffled times, random partitions
    run_aggregator("--bootstrap-servers", kafka, "--topic", topic, "--available-now", "--max-offsets-per-trigger", "90",
                   "--watermark", "1 hour", "--checkpoint", str(tmp_path / "ckpt"), "--output-dir", str(tmp_path / "out"),
                   "--dlq-topic", "", "--no-console")
    assert read_json_lines_totals(tmp_path / "out") == expected_totals(events)


def start_streaming_job(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(AGGREGATOR), "--master", "local[2]", "--no-console", "--dlq-topic", "", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)


def committed_batches(db) -> int:
    import sqlite3

    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM committed_batches").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.slow
def test_spark_job_killed_three_times_loses_and_doubles_nothing(kafka, new_topic, tmp_path):
    topic = new_topic(3)
    common = ["--bootstrap-servers", kafka, "--topic", topic]
    results = f"results-{tmp_path.name}"
    job_args = [*common, "--checkpoint", str(tmp_path / "ckpt"), "--output-dir", str(tmp_path / "out"), "--results-topic", results,
                "--results-db", str(tmp_path / "results.db"), "--max-offsets-per-trigger", "1500", "--trigger", "0 seconds"]
    run_producer(*common, "--rate", "0", "--count", "20000", "--seed", "21", "--late-fraction", "0.2", "--max-lateness-s", "600")
    db = tmp_path / "results.db"
    for kill in range(3):
        before = committed_batches(db)
        job = start_streaming_job(*job_args)
        try:
            wait_until(lambda: committed_batches(db) >= before + 2, 180, "two more committed batches")
        finally:
            os.killpg(job.pid, signal.SIGKILL)  # python driver and its JVM, mid-stream
            job.wait()
        run_producer(*common, "--rate", "0", "--count", "3000", "--seed", str(30 + kill))  # more data while it is down
    run_aggregator(*job_args[:-4], "--available-now", "--dlq-topic", "", "--no-console")
    expected = expected_totals(produced_events(kafka, topic))
    assert sum(n for _, n in expected.values()) == 29000
    assert read_results_db(db) == expected
    assert read_json_lines_totals(tmp_path / "out") == expected
    assert read_results_topic(kafka, results) == expected  # replayed batches rewrote the same keys and values


@pytest.mark.slow
def test_broker_killed_mid_stream_loses_no_acknowledged_event(tmp_path):
    broker = KafkaBroker(ROOT / ".cache" / "jars" / "kafka", tmp_path / "kafka", free_port(), free_port())
    broker.start()
    try:
        topic, count = "purchases", 6000
        common = ["--bootstrap-servers", broker.bootstrap_servers, "--topic", topic]
        create_topics(broker.bootstrap_servers, {topic: 3})
        run_producer(*common, "--rate", "0", "--count", "100", "--seed", "98")
        db = tmp_path / "results.db"
        job = start_streaming_job(*common, "--checkpoint", str(tmp_path / "ckpt"), "--results-db", str(db), "--trigger", "1 second")
        producer = None
        try:
            wait_until(lambda: committed_batches(db) >= 1, 240, "the job to commit its first batch")  # the job is up
            producer = subprocess.Popen([sys.executable, str(PRODUCER), *common, "--rate", "400", "--count", str(count), "--seed", "99",
                                         "--progress-interval-s", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
            time.sleep(4)
            broker.kill()  # SIGKILL mid-stream: no controlled shutdown
            time.sleep(5)
            broker.start()  # same data directory
            out, _ = producer.communicate(timeout=300)
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
        finally:
            if producer and producer.poll() is None:
                producer.kill()
            os.killpg(job.pid, signal.SIGTERM)
            job.wait(timeout=60)
    finally:
        broker.stop()


def test_append_mode_emits_each_closed_window_once(kafka, new_topic, tmp_path):
    topic = new_topic(1)
    send_raw(kafka, topic, [
        (event(100, T0 + 10, "a"), 0),
        (event(200, T0 + 20, "b"), 0),
        (event(400, T0 + 610, "c"), 0),
        (event(800, T0 + 3000, "d"), 0),  # moves the watermark past the first two windows
    ])
    run_aggregator("--bootstrap-servers", kafka, "--topic", topic, "--available-now", "--max-offsets-per-trigger", "2",
                   "--output-mode", "append", "--watermark", "5 minutes", "--checkpoint", str(tmp_path / "ckpt"),
                   "--output-dir", str(tmp_path / "out"), "--dlq-topic", "", "--no-console")
    lines = [json.loads(line) for path in sorted((tmp_path / "out").glob("*.jsonl")) for line in path.read_text().splitlines()]
    iso = lambda s: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))  # noqa: E731
    assert [(rec["window_start"], rec["total_purchase"], rec["orders"]) for rec in lines] == [(iso(T0), 300, 2), (iso(T0 + 600), 400, 1)]
