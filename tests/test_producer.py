"""producer.py's send loop, in-process against the session broker (no JVM of its own): every
event acknowledged and in the topic, the sticky partition turns, the summary file, a clean
stop, both client backends. The event generator's fields and ranges are in test_events.py;
the command line against a missing or a killed broker in test_pipeline.py and test_faults.py."""

from __future__ import annotations

import io
import json
import resource
import threading
import uuid
from collections import Counter

import pytest

from purchase_analytics.admin import create_topics
from purchase_analytics.config import parse_producer_config
from purchase_analytics.producer import DeliveryStats, EventGenerator, StopFlag, run_producer

from conftest import SETTINGS, read_topic


def config(kafka: str, topic: str, *args: str):
    return parse_producer_config(["--bootstrap-servers", kafka, "--topic", topic, *args], SETTINGS)


@pytest.mark.parametrize("backend", ["kafka-python", "confluent"])
def test_every_event_is_acknowledged_and_stored_once_in_the_seeds_order(kafka, new_topic, backend):
    topic = new_topic(3)
    out = io.StringIO()
    stats = run_producer(config(kafka, topic, "--rate", "0", "--count", "2500", "--seed", "5", "--backend", backend), out=out)
    assert (stats.sent, stats.acked, stats.failed, stats.pending, stats.last_error) == (2500, 2500, 0, 0, None)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"producing to topic '{topic}' at {kafka} with {backend}: 2500 events, max speed"
    assert lines[-1].startswith("done: sent 2500, acknowledged 2500, failed 0, pending 0 in ")

    stored = read_topic(kafka, topic)
    generator = EventGenerator(seed=5)
    expected = [generator.next_event().order_id for _ in range(2500)]  # the event times follow the clock
    assert sorted(json.loads(r.value)["order_id"] for r in stored) == sorted(expected)  # the seed's events, each once
    for partition in range(3):  # and in the order they were made, within each partition
        ids = [json.loads(r.value)["order_id"] for r in sorted(stored, key=lambda r: r.offset) if r.partition == partition]
        here = set(ids)
        assert ids == [i for i in expected if i in here]


def test_at_full_speed_a_partition_takes_a_batch_worth_before_the_next(kafka, new_topic):
    topic = new_topic(3)
    run_producer(config(kafka, topic, "--rate", "0", "--count", "2500"), out=io.StringIO())
    assert Counter(r.partition for r in read_topic(kafka, topic)) == {0: 2000, 1: 500}


def test_at_a_low_rate_the_partitions_take_turns_of_a_linger_worth(kafka, new_topic):
    topic = new_topic(3)
    run_producer(config(kafka, topic, "--rate", "400", "--count", "48"), out=io.StringIO())  # 8 events per 20 ms linger
    assert Counter(r.partition for r in read_topic(kafka, topic)) == {0: 16, 1: 16, 2: 16}


@pytest.mark.parametrize("backend", ["kafka-python", "confluent"])
def test_at_a_rate_no_event_leaves_before_its_time(kafka, new_topic, backend):
    """Event i is due `i / rate` after the start: the loop sends what is due in short
    bursts, never ahead. A lower bound on the record timestamps, so a busy machine cannot
    fail it (10 ms for the first send's own delay)."""
    topic = new_topic(2)
    rate, count = 2000, 1000
    run_producer(config(kafka, topic, "--rate", str(rate), "--count", str(count), "--backend", backend), out=io.StringIO())
    stamps = sorted(r.timestamp for r in read_topic(kafka, topic))  # set by the client as it sends, in ms
    assert len(stamps) == count
    early = [(i, t - stamps[0]) for i, t in enumerate(stamps) if t - stamps[0] < i * 1000 // rate - 10]
    assert not early, early[:5]


@pytest.mark.parametrize("backend", ["kafka-python", "confluent"])
def test_events_the_broker_refuses_are_failed_not_acknowledged(kafka, backend):
    """A topic whose records may hold 100 bytes refuses every event (about 130): each one
    is counted as failed, none as acknowledged (confluent-kafka reports only failures; its
    acknowledged count is what left its queue without one)."""
    topic = f"refused-{uuid.uuid4().hex[:12]}"
    create_topics(kafka, {topic: 1}, configs={topic: {"max.message.bytes": "100"}})
    out = io.StringIO()
    args = ("--rate", "0", "--count", "50", "--delivery-timeout-ms", "3000", "--backend", backend)
    stats = run_producer(config(kafka, topic, *args), out=out)
    assert (stats.sent, stats.acked, stats.failed, stats.pending) == (50, 0, 50, 0), out.getvalue()
    assert "sizetoolarge" in "".join(filter(str.isalpha, stats.last_error.lower())), stats.last_error
    assert read_topic(kafka, topic) == []


def test_the_summary_file_has_the_final_figures(kafka, new_topic, tmp_path):
    summary = tmp_path / "summary.json"
    run_producer(config(kafka, new_topic(1), "--rate", "0", "--count", "300", "--summary-file", str(summary)), out=io.StringIO())
    figures = json.loads(summary.read_text())
    assert {k: figures[k] for k in ("sent", "acked", "failed", "pending", "flushed", "last_error")} == {
        "sent": 300,
        "acked": 300,
        "failed": 0,
        "pending": 0,
        "flushed": True,
        "last_error": None,
    }
    elapsed = figures["elapsed_s"]  # rounded to 1 ms, the rate to 0.1 event/s: the rate is 300 over a time within 0.5 ms of it
    assert 300 / (elapsed + 0.0005) - 0.05 <= figures["events_per_s"] <= 300 / max(elapsed - 0.0005, 1e-9) + 0.05
    assert 0 < figures["peak_rss_mb"] <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + 0.1  # this process's peak so far


def test_a_stop_signal_ends_an_endless_run_with_everything_sent_acknowledged(kafka, new_topic):
    topic = new_topic(1)
    stop = StopFlag()
    out = io.StringIO()
    timer = threading.Timer(1.0, stop.stopped.set)  # what SIGINT/SIGTERM do (StopFlag.install)
    timer.start()
    try:
        options = ("--rate", "200", "--count", "0", "--seed", "5", "--progress-interval-s", "0.2")
        stats = run_producer(config(kafka, topic, *options), stop=stop, out=out)
    finally:
        timer.cancel()
    assert stats.sent == stats.acked and stats.failed == 0
    generator = EventGenerator(seed=5)
    first_sent = [generator.next_event().order_id for _ in range(stats.sent)]
    assert first_sent and [json.loads(r.value)["order_id"] for r in read_topic(kafka, topic)] == first_sent  # in order, none lost
    assert "unbounded" in out.getvalue().splitlines()[0]
    assert any(line.startswith("sent ") and "events/s), acknowledged" in line for line in out.getvalue().splitlines())


def test_delivery_stats_count_failures_and_keep_the_first_fatal_cause():
    stats = DeliveryStats(sent=5, acked=2)
    stats.on_error(TimeoutError("slow"))
    assert (stats.failed, stats.pending, stats.fatal, stats.last_error) == (1, 2, None, "TimeoutError: slow")
    stats.on_error(PermissionError("denied"), lambda exc: f"authorization failed ({exc})")
    stats.on_error(PermissionError("again"), lambda exc: f"authorization failed ({exc})")
    assert stats.fatal == "authorization failed (denied)" and stats.pending == 0 and stats.last_error == "PermissionError: again"
