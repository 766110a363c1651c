"""Structured progress from Spark's own progress reports (canned, shaped like Spark 4's)."""

from __future__ import annotations

from dataclasses import replace

from purchase_analytics.progress import BatchProgress


def spark_progress(batch_id: int, rows: int, messages: int, rejected: int = 0, dropped_rows: int = 0, run_id: str = "r1") -> dict:
    """A progress report shaped like Spark 4's: two state store instances per shuffle partition."""
    return {
        "runId": run_id,
        "batchId": batch_id,
        "timestamp": "2026-01-01T00:10:00.000Z",
        "numInputRows": rows,
        "inputRowsPerSecond": 100.0,
        "processedRowsPerSecond": 1234.5,
        "batchDuration": 250,
        "eventTime": {"watermark": "2026-01-01T00:00:00.000Z"},
        "observedMetrics": {"quality": {"messages": messages, "rejected": rejected}},
        "stateOperators": [
            {"numStateStoreInstances": 4, "numShufflePartitions": 2, "numRowsDroppedByWatermark": 2 * dropped_rows, "numRowsTotal": 2 * 7}
        ],
        "sources": [{"startOffset": '{"t":{"0":5,"1":7}}', "endOffset": {"t": {"0": 15, "1": 12}}}],
    }


def test_from_spark_counts_each_state_store_once_and_reads_the_offsets():
    p = BatchProgress.from_spark(spark_progress(3, rows=15, messages=15, rejected=2, dropped_rows=1))
    assert (p.batch_id, p.input_rows, p.messages, p.rejected, p.valid) == (3, 15, 15, 2, 13)
    assert (p.dropped_late_rows, p.state_rows, p.batch_duration_ms) == (1, 7, 250)
    assert p.start_offsets == {"t": {"0": 5, "1": 7}} and p.end_offsets == {"t": {"0": 15, "1": 12}}
    assert p.watermark == "2026-01-01T00:00:00.000Z"


def test_the_initial_watermark_is_none():
    report = spark_progress(0, rows=0, messages=0)
    report["eventTime"] = {"watermark": "1970-01-01T00:00:00.000Z"}
    assert BatchProgress.from_spark(report).watermark is None


def test_record_and_line_report_events_not_spark_rows():
    p = replace(BatchProgress.from_spark(spark_progress(0, rows=10, messages=10, rejected=3, dropped_rows=1)), dropped_late=25)
    record = p.to_record("t")
    assert record["dropped_late"] == 25 and "dropped_late_rows" not in record
    assert record["end_offsets"] == {"0": 15, "1": 12} and record["topic"] == "t" and record["valid"] == 7
    assert (
        p.line() == "batch 0: 10 messages, 3 rejected, 25 dropped as late, 7 state rows, watermark 2026-01-01T00:00:00.000Z, 1,234 rows/s"
    )


def test_an_idle_batch_only_moved_the_watermark():
    assert BatchProgress.from_spark(spark_progress(1, rows=0, messages=0)).is_idle
    assert not BatchProgress.from_spark(spark_progress(1, rows=0, messages=0, dropped_rows=1)).is_idle
