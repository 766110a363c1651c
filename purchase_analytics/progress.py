"""Structured progress: one record per micro-batch of the windows query, taken from Spark's
own progress report. It is the one source for the job's console lines and summary, the
metrics topic (the dashboard), the benchmark and the tests; nothing parses prose back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

QUALITY_METRICS = "quality"  # the name of the job's observe() metrics


def _per_store(operator: dict, metric: str) -> int:
    """Spark 4's aggregation reports its restore and save steps as two state store
    instances per shuffle partition, each counting the same rows; count them once."""
    copies = max(1, int(operator.get("numStateStoreInstances", 0)) // max(1, int(operator.get("numShufflePartitions", 1))))
    return int(operator.get(metric, 0)) // copies


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
    dropped_late_rows: int  # Spark's numRowsDroppedByWatermark: rows after partial aggregation, not events
    state_rows: int
    watermark: str | None
    start_offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    end_offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped_late: int = 0  # events dropped by the watermark, counted by the job (see job.count_late_events)

    @property
    def valid(self) -> int:
        return self.messages - self.rejected

    @property
    def is_idle(self) -> bool:
        """A batch that read nothing and dropped nothing only moved the watermark."""
        return self.input_rows == 0 and self.dropped_late_rows == 0

    @classmethod
    def from_spark(cls, progress: dict) -> BatchProgress:
        quality = progress.get("observedMetrics", {}).get(QUALITY_METRICS, {})
        operators = progress.get("stateOperators", [])
        sources = progress.get("sources") or [{}]
        watermark = progress.get("eventTime", {}).get("watermark")
        return cls(
            run_id=str(progress["runId"]),
            batch_id=int(progress["batchId"]),
            timestamp=progress.get("timestamp", ""),
            input_rows=int(progress.get("numInputRows", 0)),
            input_rows_per_s=float(progress.get("inputRowsPerSecond") or 0.0),
            processed_rows_per_s=float(progress.get("processedRowsPerSecond") or 0.0),
            batch_duration_ms=int(progress.get("batchDuration", 0)),
            messages=int(quality.get("messages", 0)),
            rejected=int(quality.get("rejected", 0)),
            dropped_late_rows=sum(_per_store(op, "numRowsDroppedByWatermark") for op in operators),
            state_rows=sum(_per_store(op, "numRowsTotal") for op in operators),
            watermark=None if not watermark or watermark.startswith("1970-01-01T00:00:00") else watermark,
            start_offsets=_offsets(sources[0].get("startOffset")),
            end_offsets=_offsets(sources[0].get("endOffset")),
        )

    def to_record(self, topic: str) -> dict:
        """The metrics topic's JSON value (see docs): offsets of the job's own topic only."""
        record = {k: v for k, v in asdict(self).items() if k not in ("start_offsets", "end_offsets", "dropped_late_rows")}
        return {**record, "valid": self.valid, "topic": topic, "end_offsets": self.end_offsets.get(topic, {})}

    def line(self) -> str:
        return (
            f"batch {self.batch_id}: {self.messages} messages, {self.rejected} rejected, "
            f"{self.dropped_late} dropped as late, {self.state_rows} state rows, watermark {self.watermark or '-'}, "
            f"{self.processed_rows_per_s:,.0f} rows/s"
        )
