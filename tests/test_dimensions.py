"""Windows split by event fields (--group-by) and sliding windows (--slide), through the
job's own queries on the session broker, against totals computed here from the topic."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime, timezone

from readers import read_results_db, read_results_topic

from purchase_analytics.reference import window_totals
from purchase_analytics.sinks import read_json_lines_totals

from conftest import job_args, run_queries, send_raw
from malformed import MALFORMED, VALID

NOW = int(time.time())
T0 = NOW - NOW % 600 - 6 * 3600  # a window boundary a few hours ago
FURNITURE = ("Chair", "Table", "Desk", "Sofa", "Bed")


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def value(order_id: str, price: int, ts: float, furniture: str = "Sofa", color: str = "red") -> bytes:
    return json.dumps({**VALID, "order_id": order_id, "price": price, "ts": ts, "furniture": furniture, "color": color}).encode()


def test_totals_per_window_and_furniture_are_exact_in_every_output(spark, kafka, new_topic, tmp_path):
    """Late and invalid messages, an event on a window boundary; restarts between three
    parts of the topic; the console, JSON lines, SQLite and the results topic all carry the
    group column and equal the totals computed from the topic."""
    topic, results = new_topic(3), f"results-{tmp_path.name}"
    rng = random.Random(32)
    on_time = [(f"g{i}", rng.randint(100, 9000), T0 + 3 * i + rng.random(), rng.choice(FURNITURE)) for i in range(400)]
    on_time.append(("boundary", 777, T0 + 600, "Bed"))
    send_raw(kafka, topic, [(value(o, p, t, f), i % 3) for i, (o, p, t, f) in enumerate(on_time)])
    send_raw(kafka, topic, [(payload, i % 3) for i, (payload, _) in enumerate(MALFORMED[:8])])
    config = job_args(
        kafka, topic, tmp_path, "--group-by", "furniture", "--max-offsets-per-trigger", "150",
        "--results-db", str(tmp_path / "results.db"), "--results-topic", results,
    )  # fmt: skip
    first = run_queries(spark, config)
    # then, far later, events whose windows the watermark has long closed (dropped), and more on time
    later = [(f"n{i}", 1000 + i, T0 + 7200 + i, FURNITURE[i % 5]) for i in range(50)]
    late = [(f"late{i}", 5, T0 + i, "Chair") for i in range(7)]
    send_raw(kafka, topic, [(value(o, p, t, f), i % 3) for i, (o, p, t, f) in enumerate(later)])
    second = run_queries(spark, config)
    send_raw(kafka, topic, [(value(o, p, t, f), i % 3) for i, (o, p, t, f) in enumerate(late)])
    third = run_queries(spark, config)

    counted = [{"order_id": o, "price": p, "ts": t, "furniture": f} for o, p, t, f in [*on_time, *later]]
    expected = window_totals(counted, group_by=("furniture",))
    assert (first.messages, first.rejected) == (len(on_time) + 8, 8)
    assert (second.messages, second.dropped_late, third.messages, third.dropped_late) == (50, 0, 7, 7)
    assert read_json_lines_totals(tmp_path / "out") == expected
    assert read_results_db(tmp_path / "results.db") == expected
    assert read_results_topic(kafka, results) == expected
    assert expected[(iso(T0 + 600), "Bed")][1] >= 1  # the boundary event opened the later window


def test_sliding_windows_count_an_event_once_per_window_and_its_late_share(spark, kafka, new_topic, tmp_path):
    """10-minute windows every 5 minutes, append mode, 10 messages a micro-batch, and a
    restart: every window once, closed, with the totals computed here. An event whose
    earlier window had closed and whose later one was open counts in the later one only."""
    topic = new_topic(1)
    first = [(f"a{i}", 100 + i, T0 + 1300 + 10 * i) for i in range(10)]  # batch 0: the watermark becomes T0+790
    second = [(f"b{i}", 200 + i, T0 + 1400 + 10 * i) for i in range(10)]  # batch 1: late rows still judged by none
    half_late = ("half", 50_000, T0 + 350)  # batch 2, judged by T0+790: [T0, T0+600) closed, [T0+300, T0+900) open
    fully_late = ("gone", 60_000, T0 + 100)  # [T0-300, T0+300) and [T0, T0+600): both closed
    third = [(f"c{i}", 300 + i, T0 + 1500 + 10 * i) for i in range(8)]
    sent = [*first, *second, half_late, fully_late, *third]
    send_raw(kafka, topic, [(value(*e), 0) for e in sent])
    config = job_args(kafka, topic, tmp_path, "--slide", "5 minutes", "--output-mode", "append", "--max-offsets-per-trigger", "10")
    before_restart = run_queries(spark, config)
    closers = [(f"z{i}", 1, T0 + 3000 + 10 * i) for i in range(10)]  # after the restart: the watermark passes every window above
    send_raw(kafka, topic, [(value(*e), 0) for e in closers])
    after_restart = run_queries(spark, config)

    lines = [json.loads(line) for path in sorted((tmp_path / "out").glob("*.jsonl")) for line in path.read_text().splitlines()]
    emitted = {rec["window_start"]: (rec["total_purchase"], rec["orders"]) for rec in lines}
    assert len(lines) == len(emitted)  # append mode: every window once, across the restart
    on_time = window_totals([{"price": p, "ts": t} for _, p, t in [*first, *second, *third, *closers]], slide_s=300)
    expected = {**on_time, iso(T0 + 300): (50_000, 1)}  # the half-late event, in its open window only
    assert emitted == {k: v for k, v in expected.items() if k < iso(T0 + 3000 - 600 - 300)}
    assert iso(T0 + 300) in emitted and iso(T0 + 1500) in emitted
    # three late window rows, two windows an event: 1.5 events, rounded down
    assert (before_restart.dropped_late, after_restart.dropped_late) == (1, 0)
