"""Structured progress: one record per micro-batch of the job's windows query, from Spark's
own progress report: timing, rates, offsets, the watermark, the state store's rows, and the
batch's message counts (an observed metric of the query, BATCH_METRICS). Only the late
events are counted by the job (late_events.LateEvents). It is the one source for the job's console
lines and summary, the metrics topic (the dashboard), the benchmark and the tests; nothing
parses prose back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

# The windows query's observed metric (Dataset.observe): per micro-batch, `messages` read
# and `rejected` (dead-lettered by the dead-letter query).
BATCH_METRICS = "batch"
NO_WATERMARK = "1970-01-01T00:00:00.000Z"  # Spark's watermark before any event was seen


def _offsets(source_offsets: str | dict | None) -> dict[str, dict[str, int]]:
    """Spark's offsets for one Kafka source ({"topic": {"0": 12}}), as a dict; {} when unset."""
    if not source_offsets:
        return {}
    parsed = json.loads(source_offsets) if isinstance(source_offsets, str) else source_offsets
    return {topic: {str(p): int(o) for p, o in parts.items()} for topic, parts in parsed.items()} if isinstance(parsed, dict) else {}


@dataclass(frozen=True)
class BatchProgress:
    run_id: str
    batch_id: int
    timestamp: str
    input_rows: int
    input_rows_per_s: float
    processed_rows_per_s: float
    batch_duration_ms: int
    messages: int  # read from the topic in this batch
    rejected: int  # sent to the dead-letter topic
    dropped_late: int  # valid events Spark's aggregation dropped as late (their window had closed)
    state_rows: int  # open windows (rows of Spark's state store)
    watermark: str | None
    start_offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    end_offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    late_rows: int = 0  # Spark's numRowsDroppedByWatermark: late window rows after its aggregation, not events
    # Where the batch's time went, as Spark reports it (addBatch: the batch and the sinks;
    # walCommit and commitOffsets: the checkpoint's logs; latestOffset, getBatch, queryPlanning)
    durations_ms: dict[str, int] = field(default_factory=dict)
    # Spark's stable id of the query: the same across restarts on a checkpoint, new for a new
    # checkpoint; with the batch id, what identifies the batch's record
    query_id: str = ""

    @property
    def valid(self) -> int:
        return self.messages - self.rejected

    @property
    def is_idle(self) -> bool:
        """A batch that read nothing and dropped nothing only moved the watermark."""
        return self.input_rows == 0 and self.dropped_late == 0

    @classmethod
    def from_spark(cls, progress: dict, dropped_late: int = 0) -> BatchProgress:
        """Spark's report of one batch of the windows query, with its late events."""
        sources = progress.get("sources") or [{}]
        observed = (progress.get("observedMetrics") or {}).get(BATCH_METRICS) or {}
        state = (progress.get("stateOperators") or [{}])[0]
        watermark = (progress.get("eventTime") or {}).get("watermark")
        return cls(
            run_id=str(progress["runId"]),
            batch_id=int(progress["batchId"]),
            timestamp=progress.get("timestamp", ""),
            input_rows=int(progress.get("numInputRows", 0)),
            input_rows_per_s=float(progress.get("inputRowsPerSecond") or 0.0),
            processed_rows_per_s=float(progress.get("processedRowsPerSecond") or 0.0),
            batch_duration_ms=int(progress.get("batchDuration", 0)),
            messages=int(observed.get("messages") or 0),
            rejected=int(observed.get("rejected") or 0),
            dropped_late=dropped_late,
            state_rows=int(state.get("numRowsTotal") or 0),
            watermark=None if watermark in (None, NO_WATERMARK) else watermark,
            start_offsets=_offsets(sources[0].get("startOffset")),
            end_offsets=_offsets(sources[0].get("endOffset")),
            late_rows=int(state.get("numRowsDroppedByWatermark") or 0),
            durations_ms={k: int(v) for k, v in (progress.get("durationMs") or {}).items()},
            query_id=str(progress.get("id") or ""),
        )

    def to_record(self, topic: str) -> dict:
        """The metrics topic's JSON value (see docs): offsets of the job's own topic only."""
        record = {k: v for k, v in asdict(self).items() if k not in ("start_offsets", "end_offsets")}
        return {**record, "valid": self.valid, "topic": topic, "end_offsets": self.end_offsets.get(topic, {})}

    def line(self) -> str:
        return (
            f"batch {self.batch_id}: {self.messages} messages, {self.rejected} rejected, "
            f"{self.dropped_late} dropped as late, {self.state_rows} state rows, watermark {self.watermark or '-'}, "
            f"{self.processed_rows_per_s:,.0f} rows/s"
        )


def metrics_key(record: dict) -> str:
    """A metrics record's key: its query id and batch id, `|`-separated. A record written
    again (a replayed batch) has the same key: readers keep one per key."""
    return f"{record.get('query_id', '')}|{record['batch_id']}"


@dataclass
class JobSummary:
    batches: int = 0
    messages: int = 0
    rejected: int = 0
    dropped_late: int = 0  # valid events whose window had closed
    restarts: int = 0
    _last_batch: dict = field(default_factory=dict, repr=False)  # runId -> last batchId folded in

    def is_new(self, run_id: str, batch_id: int) -> bool:
        return batch_id > self._last_batch.get(run_id, -1)

    def is_next(self, run_id: str, batch_id: int) -> bool:
        """The batch right after the last one folded in from this run: nothing in between."""
        return run_id in self._last_batch and batch_id == self._last_batch[run_id] + 1

    def record(self, progress: BatchProgress) -> bool:
        """Fold one new batch into the totals; False for a batch that only moved the watermark."""
        self._last_batch[progress.run_id] = progress.batch_id
        if progress.is_idle:
            return False
        self.batches += 1
        self.messages += progress.messages
        self.rejected += progress.rejected
        self.dropped_late += progress.dropped_late
        return True

    def line(self) -> str:
        return (
            f"summary: {self.batches} batches, {self.messages} messages, {self.messages - self.rejected} valid, "
            f"{self.rejected} rejected (dead-letter topic), {self.dropped_late} dropped as late by the watermark"
            + (f", {self.restarts} restarts from the checkpoint" if self.restarts else "")
        )
