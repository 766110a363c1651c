"""The valid events Spark's aggregation dropped as late, counted per micro-batch of the
windows query (docs/data-rules.md)."""

from __future__ import annotations

import threading

from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F

from .checkpoint import WINDOWS_DIR, query_checkpoint
from .config import AggregatorConfig
from .options import interval_seconds
from .records import window_key


class LateEvents:
    """How many valid events Spark's aggregation dropped as late in each micro-batch.

    Spark judges a row late when its window ended at or before the watermark of the batch
    before (and reports numRowsDroppedByWatermark, which counts window rows after its
    aggregation: a batch's late events of one window are one row). So the job counts
    events from what the aggregation kept: a batch's valid events less the events it added
    to windows, read from the window counts. In update mode a batch emits every window it
    changed with its new count: the added events are those counts less the ones before. In
    append mode a window is emitted once, closed, so the counts are read from Spark's state
    store after each batch with input, through Spark's state data source. A (re)started
    query starts from the counts in the state store of the batch before its first.

    With sliding windows an event is in several windows and the counts add up window rows:
    ProgressReporter divides the dropped ones by the windows per event (docs/data-rules.md)."""

    def __init__(self, spark: SparkSession, config: AggregatorConfig):
        self.spark, self.group_by = spark, config.group_by
        self.append = config.output_mode == "append"
        self.checkpoint = query_checkpoint(config.checkpoint_dir, WINDOWS_DIR)
        self.counts: dict[tuple, int] | None = None  # window key -> its events, after the last batch counted
        self._emitted: dict[int, dict[tuple, int]] = {}  # batch id -> the counts it emitted
        self._lock = threading.Lock()

    def start(self) -> None:
        """Before the query (re)starts: its first batch starts from the counts of the batch
        before it, read then (by then Spark has read the checkpoint: a damaged one fails
        the query with Spark's own error, which the job explains)."""
        with self._lock:
            self._emitted.clear()
        self.counts = None

    def emitted(self, batch_id: int, rows: list[Row]) -> None:
        with self._lock:
            self._emitted[batch_id] = {window_key(r, self.group_by): int(r["orders"]) for r in rows}

    def added(self, batch_id: int, had_input: bool, watermark_s: float | None) -> int:
        """Events batch `batch_id` added to windows (Spark reported it; call in batch order)."""
        with self._lock:
            emitted = self._emitted.pop(batch_id, {})
        if self.counts is None:
            self.counts = self._state_counts(batch_id - 1) if batch_id > 0 else {}
        if not self.append:
            current = {**self.counts, **emitted}
        elif had_input:
            current = self._state_counts(batch_id)
        else:  # no input adds nothing: the windows it emitted have closed
            current = {k: v for k, v in self.counts.items() if k not in emitted}
        closed = {k: emitted.get(k, self.counts.get(k, 0)) for k in (self.counts.keys() | emitted.keys()) - current.keys()}
        added = sum(current.values()) + sum(closed.values()) - sum(self.counts.values())
        if watermark_s is not None:  # windows the watermark has passed left Spark's state
            current = {k: v for k, v in current.items() if k[1] > watermark_s}
        self.counts = current
        return added

    def _state_counts(self, batch_id: int) -> dict[tuple, int]:
        reader = self.spark.read.format("statestore").option("batchId", batch_id)
        try:
            state = reader.load(self.checkpoint)
            rows = state.select(
                F.col("key.window.start").alias("window_start"),
                F.col("key.window.end").alias("window_end"),
                *[F.col(f"key.{g}").alias(g) for g in self.group_by],
                F.col("value.count").alias("orders"),
            ).collect()
        except Exception as exc:  # a query that has committed no batch has no state yet
            if "STDS_" in str(exc) or "PATH_NOT_FOUND" in str(exc):
                return {}
            raise
        return {window_key(r, self.group_by): int(r["orders"]) for r in rows}


def windows_per_event(config: AggregatorConfig) -> int:
    """How many windows each event is in: one when tumbling, window / slide when sliding
    (a window a whole number of slides long; otherwise it varies, and the late count is
    rounded down)."""
    if not config.slide_duration:
        return 1
    return max(1, int(interval_seconds(config.window_duration) // interval_seconds(config.slide_duration)))
