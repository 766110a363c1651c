"""Structured progress: one record per micro-batch of the job's query, from Spark's own
progress report (timing, rates, offsets) and what the batch did to the windows
(window_state.BatchOutcome: messages, rejected, late, state, watermark). It is the one
source for the job's console lines and summary, the metrics topic (the dashboard), the
benchmark and the tests; nothing parses prose back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .window_state import BatchOutcome


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
    dropped_late: int  # valid events dropped by the watermark (their window had closed)
    state_rows: int  # open windows
    watermark: str | None
    start_offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    end_offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    # Where the batch's time went, as Spark reports it (addBatch: the job's batch handler;
    # walCommit and commitOffsets: the checkpoint's logs; latestOffset, getBatch, queryPlanning)
    durations_ms: dict[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> int:
        return self.messages - self.rejected

    @property
    def is_idle(self) -> bool:
        """A batch that read nothing and dropped nothing only moved the watermark."""
        return self.input_rows == 0 and self.dropped_late == 0

    @classmethod
    def from_spark(cls, progress: dict, outcome: BatchOutcome | None = None) -> BatchProgress:
        """Spark's report of one batch, with what the job's batch handler recorded for it
        (None for a batch that never reached the handler: it changed nothing)."""
        sources = progress.get("sources") or [{}]
        return cls(
            run_id=str(progress["runId"]),
            batch_id=int(progress["batchId"]),
            timestamp=progress.get("timestamp", ""),
            input_rows=int(progress.get("numInputRows", 0)),
            input_rows_per_s=float(progress.get("inputRowsPerSecond") or 0.0),
            processed_rows_per_s=float(progress.get("processedRowsPerSecond") or 0.0),
            batch_duration_ms=int(progress.get("batchDuration", 0)),
            messages=outcome.messages if outcome else 0,
            rejected=outcome.rejected if outcome else 0,
            dropped_late=outcome.dropped_late if outcome else 0,
            state_rows=outcome.state_rows if outcome else 0,
            watermark=outcome.watermark if outcome else None,
            start_offsets=_offsets(sources[0].get("startOffset")),
            end_offsets=_offsets(sources[0].get("endOffset")),
            durations_ms={k: int(v) for k, v in (progress.get("durationMs") or {}).items()},
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
