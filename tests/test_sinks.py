"""The sinks on their own: the console table, replay-safe JSON lines and SQLite results,
and the foreachBatch fan-out on a static DataFrame."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest
from pyspark.sql import Row
from readers import read_results_db

from purchase_analytics.sinks import (
    ConsoleSink,
    JsonLinesSink,
    ResultsDbMismatch,
    SqliteResultsSink,
    read_json_lines_totals,
)


def window(start: datetime, end: datetime, total: int, orders: int, **groups) -> Row:
    """A row as Spark's aggregation emits it (transform.aggregate_windows)."""
    return Row(window_start=start, window_end=end, **groups, total_purchase=total, orders=orders)


def utc(hour: int, minute: int) -> datetime:
    return datetime(2026, 1, 2, hour, minute, tzinfo=timezone.utc)


ROWS = [window(utc(10, 0), utc(10, 10), 1500, 3), window(utc(10, 10), utc(10, 20), 250000, 12)]


def test_console_prints_the_original_table_in_the_session_time_zone():
    out = io.StringIO()
    ConsoleSink("Europe/Berlin", out=out).write(7, ROWS)
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
    ConsoleSink("UTC", out=(out := io.StringIO())).write(8, [])
    assert out.getvalue() == ""  # a batch that only moved the watermark prints nothing


def test_json_lines_replay_rewrites_its_own_file_and_the_last_line_wins(tmp_path):
    sink = JsonLinesSink(tmp_path / "out")
    sink.write(0, ROWS)
    sink.write(1, [window(utc(10, 0), utc(10, 10), 1700, 4)])
    sink.write(1, [window(utc(10, 0), utc(10, 10), 1700, 4)])  # the replay of batch 1
    sink.write(2, [])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["batch-000000000000.jsonl", "batch-000000000001.jsonl"]
    assert read_json_lines_totals(tmp_path / "out") == {"2026-01-02T10:00:00Z": (1700, 4), "2026-01-02T10:10:00Z": (250000, 12)}


def test_sqlite_skips_a_batch_id_it_has_committed(tmp_path):
    sink = SqliteResultsSink(tmp_path / "results.db")
    sink.write(0, ROWS)
    sink.write(0, [window(utc(10, 0), utc(10, 10), 999, 9)])  # a replay must change nothing
    sink.write(1, [window(utc(10, 0), utc(10, 10), 1700, 4)])
    SqliteResultsSink(tmp_path / "results.db")  # reopening keeps the tables
    assert read_results_db(tmp_path / "results.db") == {"2026-01-02T10:00:00Z": (1700, 4), "2026-01-02T10:10:00Z": (250000, 12)}


def test_naive_datetimes_from_spark_are_read_in_the_local_zone(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    import time

    time.tzset()
    try:
        JsonLinesSink(tmp_path).write(0, [window(datetime(2026, 1, 2, 15, 30), datetime(2026, 1, 2, 15, 40), 1, 1)])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert read_json_lines_totals(tmp_path) == {"2026-01-02T10:00:00Z": (1, 1)}


def test_group_columns_follow_the_window_in_every_sink(tmp_path):
    rows = [window(utc(10, 0), utc(10, 10), 900, 2, furniture="Bed"), window(utc(10, 0), utc(10, 10), 600, 1, furniture="Sofa")]
    out = io.StringIO()
    ConsoleSink("UTC", ("furniture",), out=out).write(3, rows)
    assert "|       window_start|         window_end|furniture|total_purchase|orders|" in out.getvalue()
    assert "|2026-01-02 10:00:00|2026-01-02 10:10:00|     Sofa|           600|     1|" in out.getvalue()
    JsonLinesSink(tmp_path / "out", ("furniture",)).write(3, rows)
    SqliteResultsSink(tmp_path / "r.db", ("furniture",)).write(3, rows)
    expected = {("2026-01-02T10:00:00Z", "Bed"): (900, 2), ("2026-01-02T10:00:00Z", "Sofa"): (600, 1)}
    assert read_json_lines_totals(tmp_path / "out") == read_results_db(tmp_path / "r.db") == expected
    SqliteResultsSink(tmp_path / "r.db", ("furniture",)).write(4, [window(utc(10, 0), utc(10, 10), 1000, 3, furniture="Bed")])
    assert read_results_db(tmp_path / "r.db")[("2026-01-02T10:00:00Z", "Bed")] == (1000, 3)


def test_a_results_db_of_other_groups_is_refused_in_one_line(tmp_path):
    SqliteResultsSink(tmp_path / "r.db").write(0, ROWS)
    with pytest.raises(ResultsDbMismatch, match=r"columns window_start, window_end, total_purchase.*own --results-db"):
        SqliteResultsSink(tmp_path / "r.db", ("color",))
