"""What the dashboard knows, folded from Kafka records; pure, so it is tested without a broker.

Inputs (see docs/dashboard.md): the results topic (latest total per window, keyed by window
start), the metrics topic (one JSON per micro-batch), the dead-letter topic's
`rejection_reason` headers and the purchase topic's end offsets.

Every topic may hold a record twice: a micro-batch that runs again after a crash writes its
outputs again. So each is folded by what identifies it: a window by its start, a batch by
its id, a dead letter by its source message (topic, partition, offset).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

RATE_HISTORY = 60  # batches kept for the throughput chart


def parse_time(text: str | None) -> datetime | None:
    """ISO-8601 UTC as the job writes it ('...Z', with or without milliseconds)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _json(value: bytes | None) -> dict | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


@dataclass
class PipelineState:
    windows: dict[str, dict] = field(default_factory=dict)  # window_start -> latest value
    batches: dict[int, dict] = field(default_factory=dict)  # batch_id -> its metrics (the latest copy of a replay)
    dead_letter_reasons: dict[tuple[str, str, str], str] = field(default_factory=dict)  # source coordinates -> reason
    dead_letters: Counter = field(default_factory=Counter)  # rejection_reason -> distinct dead letters
    end_offsets: dict[int, int] = field(default_factory=dict)  # the purchase topic's, as the broker reports them
    ignored: int = 0  # records that were not the contract's JSON

    def apply_result(self, key: bytes | None, value: bytes | None) -> None:
        if value is None and key is not None:  # a tombstone deletes the window
            self.windows.pop(key.decode("utf-8", "replace"), None)
            return
        row = _json(value)
        if row is None or not {"window_start", "window_end", "total_purchase", "orders"} <= row.keys():
            self.ignored += 1
            return
        self.windows[row["window_start"]] = row

    def apply_metrics(self, value: bytes | None) -> None:
        row = _json(value)
        if row is None or not isinstance(row.get("batch_id"), int):
            self.ignored += 1
            return
        self.batches[row["batch_id"]] = row

    def apply_dead_letter(self, headers: list[tuple[str, bytes | None]], key: bytes | None = None) -> None:
        """Count a dead letter once per source message: its `source_topic`, `source_partition`
        and `source_offset` headers, else its key (`topic-partition-offset`). A copy written
        again by a replayed batch replaces the first (its reason the latest one); a record with
        neither is counted as it comes."""
        values = {k: v.decode("utf-8", "replace") for k, v in headers if v is not None}
        reason = values.get("rejection_reason") or "(no reason header)"
        source = tuple(values.get(name) for name in ("source_topic", "source_partition", "source_offset"))
        if None in source:
            source = tuple(key.decode("utf-8", "replace").rsplit("-", 2)) if key else ()
        if len(source) != 3:
            self.dead_letters[reason] += 1
            return
        before = self.dead_letter_reasons.get(source)
        if before == reason:
            return
        if before is not None:
            self.dead_letters[before] -= 1
            if not self.dead_letters[before]:
                del self.dead_letters[before]
        self.dead_letter_reasons[source] = reason
        self.dead_letters[reason] += 1

    def latest_batch(self) -> dict | None:
        return self.batches[max(self.batches)] if self.batches else None

    def consumer_lag(self) -> int | None:
        """Purchase topic end offsets minus the job's position after its newest batch."""
        latest = self.latest_batch()
        if latest is None or not self.end_offsets:
            return None
        positions = {int(p): int(o) for p, o in (latest.get("end_offsets") or {}).items()}
        return sum(max(0, end - positions.get(p, 0)) for p, end in self.end_offsets.items())

    def view(self, last_windows: int) -> dict:
        """Everything the page shows, as plain values."""
        latest = self.latest_batch() or {}
        watermark = parse_time(latest.get("watermark"))
        rows = []
        for start in sorted(self.windows)[-last_windows:]:
            w = self.windows[start]
            end = parse_time(w["window_end"])
            final = bool(watermark and end and end <= watermark)
            rows.append(
                {
                    "window_start": w["window_start"],
                    "window_end": w["window_end"],
                    "total_purchase": w["total_purchase"],
                    "orders": w["orders"],
                    "final": final,
                    "batch_id": w.get("batch_id"),
                }
            )
        history = [self.batches[b] for b in sorted(self.batches)[-RATE_HISTORY:]]
        with_data = [b for b in history if b.get("input_rows")]
        # Spark reports no input rate for a query's first batch; the processing rate stands in then
        input_rate = (with_data[-1].get("input_rows_per_s") or with_data[-1].get("processed_rows_per_s")) if with_data else None
        return {
            "windows": rows,
            "window_count": len(self.windows),
            "watermark": latest.get("watermark"),
            "batch_id": latest.get("batch_id"),
            "batch_time": latest.get("timestamp"),
            "input_rows_per_s": input_rate,
            "processed_rows_per_s": latest.get("processed_rows_per_s"),
            "batch_duration_ms": latest.get("batch_duration_ms"),
            "dropped_late": sum(int(b.get("dropped_late") or 0) for b in self.batches.values()),
            "rejected": sum(int(b.get("rejected") or 0) for b in self.batches.values()),
            "consumer_lag": self.consumer_lag(),
            "dead_letters": dict(self.dead_letters.most_common()),
            "history": [
                {
                    "batch_id": b["batch_id"],
                    "input_rows_per_s": b.get("input_rows_per_s") or 0,
                    "processed_rows_per_s": b.get("processed_rows_per_s") or 0,
                    "batch_duration_ms": b.get("batch_duration_ms") or 0,
                }
                for b in history
            ],
        }
