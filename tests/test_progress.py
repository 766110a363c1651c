"""Structured progress from Spark's own progress reports (canned, shaped like Spark 4's for
the windows query: a stateful aggregation with an observed metric) and the batch's late events."""

from __future__ import annotations

from purchase_analytics.progress import BATCH_METRICS, NO_WATERMARK, BatchProgress


def spark_progress(
    batch_id: int, rows: int, run_id: str = "r1", messages: int = 0, rejected: int = 0, watermark: str = "2026-01-01T00:00:00.000Z"
) -> dict:
    return {
        "runId": run_id,
        "batchId": batch_id,
        "timestamp": "2026-01-01T00:10:00.000Z",
        "numInputRows": rows,
        "inputRowsPerSecond": 100.0,
        "processedRowsPerSecond": 1234.5,
        "batchDuration": 250,
        "durationMs": {"addBatch": 180, "walCommit": 30, "triggerExecution": 250},
        "sources": [{"startOffset": '{"t":{"0":5,"1":7}}', "endOffset": {"t": {"0": 15, "1": 12}}}],
        "eventTime": {"watermark": watermark},
        "stateOperators": [{"numRowsTotal": 7, "numRowsDroppedByWatermark": 2}],
        "observedMetrics": {BATCH_METRICS: {"messages": messages, "rejected": rejected}},
    }


def batch(batch_id: int, rows: int, messages: int, rejected: int = 0, dropped: int = 0, run_id: str = "r1") -> BatchProgress:
    return BatchProgress.from_spark(spark_progress(batch_id, rows, run_id, messages, rejected), dropped_late=dropped)


def test_from_spark_takes_timing_and_offsets_from_spark_and_counts_from_the_batch():
    p = batch(3, rows=15, messages=15, rejected=2, dropped=1)
    assert (p.batch_id, p.input_rows, p.messages, p.rejected, p.valid) == (3, 15, 15, 2, 13)
    assert (p.dropped_late, p.late_rows, p.state_rows, p.batch_duration_ms) == (1, 2, 7, 250)
    assert p.start_offsets == {"t": {"0": 5, "1": 7}} and p.end_offsets == {"t": {"0": 15, "1": 12}}
    assert p.watermark == "2026-01-01T00:00:00.000Z"


def test_a_batch_before_any_event_has_no_watermark():
    p = BatchProgress.from_spark(spark_progress(0, rows=0, watermark=NO_WATERMARK))
    assert (p.messages, p.rejected, p.dropped_late, p.watermark) == (0, 0, 0, None)
    assert p.is_idle


def test_record_and_line():
    p = batch(0, rows=10, messages=10, rejected=3, dropped=25)
    record = p.to_record("t")
    assert record["dropped_late"] == 25 and record["state_rows"] == 7
    assert record["end_offsets"] == {"0": 15, "1": 12} and record["topic"] == "t" and record["valid"] == 7
    assert record["durations_ms"] == {"addBatch": 180, "walCommit": 30, "triggerExecution": 250}
    assert (
        p.line() == "batch 0: 10 messages, 3 rejected, 25 dropped as late, 7 state rows, watermark 2026-01-01T00:00:00.000Z, 1,234 rows/s"
    )


def test_an_idle_batch_read_nothing():
    assert batch(1, rows=0, messages=0).is_idle
    assert not batch(1, rows=0, messages=0, dropped=1).is_idle
