"""Every output knows which run it belongs to. A run on a new checkpoint (what the job advises
when it refuses one) has a new query id and starts its batch ids at 0 again: it must neither be
skipped as a replay nor replace or mix with an earlier run's results, in any output, and the
dashboard must follow it. In-process runs on the shared session, then each output on its own."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime, timezone

from pyspark.sql import Row
from readers import read_results_db, read_results_topic
from test_job import T0  # a window boundary a few hours ago

from purchase_analytics.checkpoint import WINDOWS_DIR, LocalFiles, read_query_id
from purchase_analytics.dashboard.state import PipelineState
from purchase_analytics.kafka_client import KafkaSecurity
from purchase_analytics.progress import metrics_key
from purchase_analytics.reference import read_topic
from purchase_analytics.sinks import (
    JsonLinesSink,
    KafkaPublisher,
    KafkaResultsSink,
    SqliteResultsSink,
    read_json_lines_totals,
)

from conftest import expected_totals, job_args, run_queries, send_raw
from malformed import VALID


def events(count: int, price: int, prefix: str) -> list[dict]:
    """`count` events in two windows, the same two for every run."""
    return [{**VALID, "order_id": f"{prefix}{i}", "price": price + i, "ts": T0 + 60 + 600 * (i % 2)} for i in range(count)]


def query_id(checkpoint) -> str:
    return read_query_id(LocalFiles(checkpoint / WINDOWS_DIR))


def dashboard(kafka: str, results: str, metrics: str) -> PipelineState:
    """The dashboard's fold of the results and metrics topics, with the records' Kafka times."""
    state = PipelineState()
    for record in read_topic(kafka, results):
        state.apply_result(record.key, record.value, record.timestamp)
    for record in read_topic(kafka, metrics):
        state.apply_metrics(record.value, record.timestamp)
    return state


def test_a_run_on_a_new_checkpoint_writes_every_output_of_its_own(spark, kafka, new_topic, tmp_path):
    """The reproduction: run 1 reads topic A in several batches (ids 0..k) into the outputs;
    run 2 reads topic B on a new checkpoint into the same outputs, in batch 0. Run 2's
    windows are in every output, run 1's stay as they were, and the readers and the
    dashboard show run 2's."""
    topic_a, topic_b = new_topic(2), new_topic(2)
    first, second = events(16, 100, "a"), events(8, 5000, "b")
    send_raw(kafka, topic_a, [(json.dumps(e).encode(), i % 2) for i, e in enumerate(first)] + [(b"{not json", 0)] * 4)
    send_raw(kafka, topic_b, [(json.dumps(e).encode(), i % 2) for i, e in enumerate(second)])
    suffix = uuid.uuid4().hex[:8]
    results, metrics = f"results-{suffix}", f"metrics-{suffix}"
    out, db, progress = tmp_path / "out", tmp_path / "results.db", tmp_path / "progress.jsonl"
    outputs = ("--output-dir", str(out), "--results-db", str(db), "--results-topic", results, "--metrics-topic", metrics)
    outputs += ("--progress-file", str(progress))

    in_batches = ("--max-offsets-per-trigger", "6")
    run_1 = run_queries(spark, job_args(kafka, topic_a, tmp_path, "--checkpoint", str(tmp_path / "ck1"), *outputs, *in_batches))
    run_2 = run_queries(spark, job_args(kafka, topic_b, tmp_path, "--checkpoint", str(tmp_path / "ck2"), *outputs))
    id_1, id_2 = query_id(tmp_path / "ck1"), query_id(tmp_path / "ck2")
    assert run_1.batches >= 3 and run_2.batches == 1 and id_1 != id_2  # run 2's batch 0 is below run 1's last batch id

    expected_1, expected_2 = expected_totals(first), expected_totals(second)
    assert len(expected_2) == 2 and expected_1.keys() == expected_2.keys()  # the same windows: a mix would show
    assert read_results_db(db) == expected_2 and read_results_db(db, id_1) == expected_1
    assert read_json_lines_totals(out) == expected_2 and read_json_lines_totals(out, id_1) == expected_1
    assert read_results_topic(kafka, results) == expected_2 and read_results_topic(kafka, results, query_id=id_1) == expected_1

    records = [json.loads(line) for line in progress.read_text().splitlines()]
    assert {r["query_id"] for r in records} == {id_1, id_2}
    assert len({metrics_key(r) for r in records}) == len(records)  # batch 0 twice, under two keys
    assert sorted(r.key.decode() for r in read_topic(kafka, metrics)) == sorted(metrics_key(r) for r in records)

    view = dashboard(kafka, results, metrics).view(last_windows=12)
    assert {w["window_start"]: (w["total_purchase"], w["orders"]) for w in view["windows"]} == expected_2
    last = {run: max(r["batch_id"] for r in records if r["query_id"] == run) for run in (id_1, id_2)}
    assert last[id_2] < last[id_1]
    assert (view["batch_id"], view["rejected"]) == (last[id_2], 0)  # run 2's newest batch and figures, not run 1's 4 rejected


def window(minute: int, total: int, orders: int) -> Row:
    start = datetime(2026, 1, 2, 10, minute, tzinfo=timezone.utc)
    return Row(window_start=start, window_end=start.replace(minute=minute + 10), total_purchase=total, orders=orders)


def test_sqlite_keeps_each_runs_batches_and_windows(tmp_path):
    sink = SqliteResultsSink(tmp_path / "r.db")
    for batch_id in range(6):
        sink.write(batch_id, [window(0, 100 * (batch_id + 1), batch_id + 1)], "run-1")
    sink.write(0, [window(0, 7, 1)], "run-2")  # a new checkpoint's batch 0 is not a replay
    sink.write(0, [window(0, 999, 9)], "run-2")  # its replay is
    assert read_results_db(tmp_path / "r.db") == {"2026-01-02T10:00:00Z": (7, 1)}
    assert read_results_db(tmp_path / "r.db", "run-1") == {"2026-01-02T10:00:00Z": (600, 6)}
    sink.write(6, [window(0, 700, 7)], "run-1")  # run 1 resumed on its checkpoint: the latest run again
    assert read_results_db(tmp_path / "r.db") == {"2026-01-02T10:00:00Z": (700, 7)}


def test_a_results_db_of_an_earlier_version_becomes_the_run_without_an_id(tmp_path):
    db = sqlite3.connect(tmp_path / "r.db")
    db.executescript(
        """CREATE TABLE window_totals (window_start TEXT NOT NULL, window_end TEXT NOT NULL, total_purchase INTEGER NOT NULL,
               orders INTEGER NOT NULL, batch_id INTEGER NOT NULL, PRIMARY KEY (window_start));
           CREATE TABLE committed_batches (batch_id INTEGER PRIMARY KEY);
           INSERT INTO window_totals VALUES ('2026-01-02T10:00:00Z', '2026-01-02T10:10:00Z', 50, 2, 3);
           INSERT INTO committed_batches VALUES (3);"""
    )
    db.close()
    sink = SqliteResultsSink(tmp_path / "r.db")
    assert read_results_db(tmp_path / "r.db") == {"2026-01-02T10:00:00Z": (50, 2)}
    sink.write(3, [window(0, 1, 1)])  # the earlier version's replay
    sink.write(0, [window(0, 8, 1)], "run-1")
    assert read_results_db(tmp_path / "r.db", "") == {"2026-01-02T10:00:00Z": (50, 2)}
    assert read_results_db(tmp_path / "r.db") == {"2026-01-02T10:00:00Z": (8, 1)}


def test_json_lines_of_two_runs_stay_apart(tmp_path):
    sink = JsonLinesSink(tmp_path)
    for batch_id in range(6):
        sink.write(batch_id, [window(0, 100 * (batch_id + 1), batch_id + 1), window(10, 5, 1)], "run-1")
    sink.write(0, [window(0, 7, 1)], "run-2")
    assert len(list(tmp_path.glob("batch-*.jsonl"))) == 7  # batch 0 of run 2 replaced no file of run 1
    assert read_json_lines_totals(tmp_path) == {"2026-01-02T10:00:00Z": (7, 1)}  # not run 1's later batches' window
    assert read_json_lines_totals(tmp_path, "run-1") == {"2026-01-02T10:00:00Z": (600, 6), "2026-01-02T10:10:00Z": (5, 1)}


def test_the_results_topic_keeps_each_runs_windows(kafka):
    topic = f"results-{uuid.uuid4().hex[:8]}"
    publisher = KafkaPublisher(kafka, KafkaSecurity())
    try:
        sink = KafkaResultsSink(publisher, topic)
        for batch_id in range(3):
            sink.write(batch_id, [window(0, 100 * (batch_id + 1), batch_id + 1)], "run-1")
        sink.write(0, [window(0, 7, 1)], "run-2")
    finally:
        publisher.close()
    assert read_results_topic(kafka, topic) == {"2026-01-02T10:00:00Z": (7, 1)}
    assert read_results_topic(kafka, topic, query_id="run-1") == {"2026-01-02T10:00:00Z": (300, 3)}
    keys = [r.key.decode() for r in read_topic(kafka, topic)]
    assert keys[-1] == "2026-01-02T10:00:00Z|run-2" and set(keys[:-1]) == {"2026-01-02T10:00:00Z|run-1"}


def metrics_record(query_id: str, batch_id: int, rejected: int, watermark: str) -> bytes:
    return json.dumps(
        {
            "query_id": query_id,
            "batch_id": batch_id,
            "rejected": rejected,
            "dropped_late": 1,
            "watermark": watermark,
            "end_offsets": {"0": 5},
        }
    ).encode()


def test_the_dashboard_follows_the_run_that_wrote_last():
    state = PipelineState()
    for batch_id in range(6):
        state.apply_metrics(metrics_record("run-1", batch_id, 2, "2026-01-02T10:30:00.000Z"), 1000 + batch_id)
    state.apply_result(b"2026-01-02T10:00:00Z|run-1", json.dumps({**_result(600, 6), "query_id": "run-1"}).encode(), 1005)
    state.apply_metrics(metrics_record("run-2", 0, 0, "2026-01-02T10:05:00.000Z"), 2000)
    state.apply_result(b"2026-01-02T10:00:00Z|run-2", json.dumps({**_result(7, 1), "query_id": "run-2"}).encode(), 2000)
    state.end_offsets = {0: 9}
    view = state.view(last_windows=12)
    assert [(w["total_purchase"], w["orders"]) for w in view["windows"]] == [(7, 1)]
    assert (view["batch_id"], view["watermark"], view["rejected"], view["dropped_late"]) == (0, "2026-01-02T10:05:00.000Z", 0, 1)
    assert view["consumer_lag"] == 4 and [h["batch_id"] for h in view["history"]] == [0]
    state.apply_metrics(metrics_record("run-1", 6, 2, "2026-01-02T10:40:00.000Z"), 3000)  # run 1 resumed: its figures again
    assert (state.view(12)["batch_id"], state.view(12)["rejected"]) == (6, 14)


def _result(total: int, orders: int) -> dict:
    return {
        "window_start": "2026-01-02T10:00:00Z",
        "window_end": "2026-01-02T10:10:00Z",
        "total_purchase": total,
        "orders": orders,
        "batch_id": 0,
    }
