"""The sinks on their own: the console table, replay-safe JSON lines and SQLite results,
and the foreachBatch fan-out on a static DataFrame."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import NamedTuple

from purchase_analytics.sinks import ConsoleSink, JsonLinesSink, SqliteResultsSink, read_json_lines_totals, read_results_db


class Row(NamedTuple):
    window_start: datetime
    window_end: datetime
    total_purchase: int
    orders: int


def utc(hour: int, minute: int) -> datetime:
    return datetime(2026, 1, 2, hour, minute, tzinfo=timezone.utc)


ROWS = [Row(utc(10, 0), utc(10, 10), 1500, 3), Row(utc(10, 10), utc(10, 20), 250000, 12)]


def test_console_prints_the_original_table_in_the_session_time_zone():
    out = io.StringIO()
    ConsoleSink("Europe/Berlin", out).write(7, ROWS)
    lines = out.getvalue().splitlines()
    assert lines[1] == "Batch: 7"
    assert lines[3:9] == [
        "+-------------------+-------------------+--------------+------+",
        "|       window_start|         window_end|total_purchase|orders|",
        "+-------------------+-------------------+--------------+------+",
        "|2026-01-02 11:00:00|2026-01-02 11:10:00|          1500|     3|",
        "|2026-01-02 11:10:00|2026-01-02 11:20:00|        250000|    12|",
        "+-------------------+-------------------+--------------+------+",
    ]
    ConsoleSink("UTC", out := io.StringIO()).write(8, [])
    assert out.getvalue() == ""  # a batch that only moved the watermark prints nothing


def test_json_lines_replay_rewrites_its_own_file_and_the_last_line_wins(tmp_path):
    sink = JsonLinesSink(tmp_path / "out")
    sink.write(0, ROWS)
    sink.write(1, [Row(utc(10, 0), utc(10, 10), 1700, 4)])
    sink.write(1, [Row(utc(10, 0), utc(10, 10), 1700, 4)])  # the replay of batch 1
    sink.write(2, [])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["batch-000000000000.jsonl", "batch-000000000001.jsonl"]
    assert read_json_lines_totals(tmp_path / "out") == {"2026-01-02T10:00:00Z": (1700, 4), "2026-01-02T10:10:00Z": (250000, 12)}


def test_sqlite_skips_a_batch_id_it_has_committed(tmp_path):
    sink = SqliteResultsSink(tmp_path / "results.db")
    sink.write(0, ROWS)
    sink.write(0, [Row(utc(10, 0), utc(10, 10), 999, 9)])  # a replay must change nothing
    sink.write(1, [Row(utc(10, 0), utc(10, 10), 1700, 4)])
    SqliteResultsSink(tmp_path / "results.db")  # reopening keeps the tables
    assert read_results_db(tmp_path / "results.db") == {"2026-01-02T10:00:00Z": (1700, 4), "2026-01-02T10:10:00Z": (250000, 12)}


def test_naive_datetimes_from_spark_are_read_in_the_local_zone(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    import time

    time.tzset()
    try:
        JsonLinesSink(tmp_path).write(0, [Row(datetime(2026, 1, 2, 15, 30), datetime(2026, 1, 2, 15, 40), 1, 1)])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert read_json_lines_totals(tmp_path) == {"2026-01-02T10:00:00Z": (1, 1)}
