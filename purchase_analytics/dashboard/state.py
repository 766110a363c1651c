"""What the dashboard knows, folded from Kafka records; pure, so it is tested without a broker.

Inputs (see docs/dashboard.md): the results topic (latest total per window and group, keyed
by the window start, then each group value, `|`-separated), the metrics topic (one JSON per
micro-batch), the dead-letter topic's `rejection_reason` headers and the purchase topic's
end offsets.

Every topic may hold a record twice: a micro-batch that runs again after a crash writes its
outputs again. So each is folded by what identifies it: a window's total by its results-topic
key (the window start, then its group's values when the job groups by event fields, then the
run's query id), a batch by its query id and batch id, a dead letter by its source message
(topic, partition, offset).

The topics may hold several runs: a job on a new checkpoint (a new query id) starts its batch
ids at 0 again. The page shows the run that wrote last (the newest record time of the results
and metrics records; records without a time count in the order they came), and only its
windows and batches.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from ..records import RECORD_FIELDS, results_topic_key

RATE_HISTORY = 60  # batches kept for the throughput chart
MAX_GROUPS = 10  # group values shown each on its own (the most revenue in the shown windows); the rest as one "other"


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


def group_fields(row: dict) -> tuple[str, ...]:
    """The event fields a results record is grouped by: its keys besides the window's and the totals'."""
    return tuple(k for k in row if k not in RECORD_FIELDS)


def _value_order(values: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v)) for v in values)


def group_label(values: tuple) -> str:
    return " / ".join(str(v) for v in values)


@dataclass
class PipelineState:
    windows: dict[str, dict] = field(default_factory=dict)  # results-topic key (window start[|group values][|query id]) -> latest value
    run_group_by: dict[str, tuple[str, ...]] = field(default_factory=dict)  # query id -> the group fields of its latest results record
    batches: dict[tuple[str, int], dict] = field(default_factory=dict)  # (query id, batch id) -> its metrics (the latest copy)
    runs: dict[str, tuple[int, int]] = field(default_factory=dict)  # query id -> (its newest record's time in ms, arrival)
    dead_letter_reasons: dict[tuple[str, str, str], str] = field(default_factory=dict)  # source coordinates -> reason
    dead_letters: Counter = field(default_factory=Counter)  # rejection_reason -> distinct dead letters
    end_offsets: dict[int, int] = field(default_factory=dict)  # the purchase topic's, as the broker reports them
    ignored: int = 0  # records that were not the contract's JSON
    _arrivals: int = 0

    def _saw_run(self, query_id: str, timestamp_ms: int | None) -> None:
        self._arrivals += 1
        time_ms = max(timestamp_ms if timestamp_ms is not None and timestamp_ms >= 0 else -1, self.runs.get(query_id, (-1, 0))[0])
        self.runs[query_id] = (time_ms, self._arrivals)

    @property
    def current_run(self) -> str:
        """The query id of the run that wrote last ("" for records without one)."""
        return max(self.runs, key=self.runs.__getitem__) if self.runs else ""

    @property
    def group_by(self) -> tuple[str, ...]:
        """The group fields of the current run's latest results record."""
        return self.run_group_by.get(self.current_run, ())

    def apply_result(self, key: bytes | None, value: bytes | None, timestamp_ms: int | None = None) -> None:
        if value is None and key is not None:  # a tombstone deletes the window (or the window's group)
            self.windows.pop(key.decode("utf-8", "replace"), None)
            return
        row = _json(value)
        if (
            row is None
            or not {"window_start", "window_end", "total_purchase", "orders"} <= row.keys()
            or not all(isinstance(row[g], (str, int, float)) for g in group_fields(row))
        ):
            self.ignored += 1
            return
        self.windows[key.decode("utf-8", "replace") if key is not None else results_topic_key(row)] = row
        run = str(row.get("query_id") or "")
        self.run_group_by[run] = group_fields(row)
        self._saw_run(run, timestamp_ms)

    def apply_metrics(self, value: bytes | None, timestamp_ms: int | None = None) -> None:
        row = _json(value)
        if row is None or not isinstance(row.get("batch_id"), int):
            self.ignored += 1
            return
        run = str(row.get("query_id") or "")
        self.batches[(run, row["batch_id"])] = row
        self._saw_run(run, timestamp_ms)

    def run_batches(self) -> dict[int, dict]:
        """The current run's batches: batch id -> its metrics."""
        run = self.current_run
        return {batch_id: row for (query_id, batch_id), row in self.batches.items() if query_id == run}

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
        batches = self.run_batches()
        return batches[max(batches)] if batches else None

    def consumer_lag(self) -> int | None:
        """Purchase topic end offsets minus the job's position after its newest batch."""
        latest = self.latest_batch()
        if latest is None or not self.end_offsets:
            return None
        positions = {int(p): int(o) for p, o in (latest.get("end_offsets") or {}).items()}
        return sum(max(0, end - positions.get(p, 0)) for p, end in self.end_offsets.items())

    def window_rows(self, last_windows: int, watermark: datetime | None) -> tuple[list[dict], list[tuple], int]:
        """The latest `last_windows` windows (by start), each with its total over its groups
        and, when the results are grouped, its groups' totals: the current run's only (other
        runs' records, and records of other group fields than its latest one's, are left out).
        Returns the rows, the group values shown on their own (at most MAX_GROUPS, by value;
        the rest of a window's groups are summed as one "other") and the number of windows."""
        parts: dict[str, list[dict]] = {}
        run, group_by = self.current_run, self.group_by
        for row in self.windows.values():
            if str(row.get("query_id") or "") == run and group_fields(row) == group_by:
                parts.setdefault(row["window_start"], []).append(row)
        starts = sorted(parts)[-last_windows:]
        revenue: Counter = Counter()
        for start in starts:
            for row in parts[start]:
                revenue[tuple(row[g] for g in self.group_by)] += row["total_purchase"]
        shown = sorted((values for values, _ in revenue.most_common(MAX_GROUPS)), key=_value_order) if self.group_by else []
        rows = []
        for start in starts:
            window = parts[start]
            end = parse_time(window[0]["window_end"])
            batch_ids = [row["batch_id"] for row in window if row.get("batch_id") is not None]
            rows.append(
                {
                    "window_start": start,
                    "window_end": window[0]["window_end"],
                    "total_purchase": sum(row["total_purchase"] for row in window),
                    "orders": sum(row["orders"] for row in window),
                    "final": bool(watermark and end and end <= watermark),
                    "batch_id": max(batch_ids) if batch_ids else None,
                    "groups": self._groups(window, shown) if self.group_by else [],
                }
            )
        return rows, shown, len(parts)

    def _groups(self, window: list[dict], shown: list[tuple]) -> list[dict]:
        """A window's groups: those shown on their own in the order of `shown`, then "other"."""
        totals = {tuple(row[g] for g in self.group_by): row for row in window}
        groups = [
            {
                "values": values,
                "label": group_label(values),
                "total_purchase": totals[values]["total_purchase"],
                "orders": totals[values]["orders"],
            }
            for values in shown
            if values in totals
        ]
        rest = [row for values, row in totals.items() if values not in shown]
        if rest:
            groups.append(
                {
                    "values": None,
                    "label": f"other ({len(rest)})",
                    "total_purchase": sum(row["total_purchase"] for row in rest),
                    "orders": sum(row["orders"] for row in rest),
                }
            )
        return groups

    def view(self, last_windows: int) -> dict:
        """Everything the page shows, as plain values."""
        latest = self.latest_batch() or {}
        rows, shown, window_count = self.window_rows(last_windows, parse_time(latest.get("watermark")))
        batches = self.run_batches()
        history = [batches[b] for b in sorted(batches)[-RATE_HISTORY:]]
        with_data = [b for b in history if b.get("input_rows")]
        # Spark reports no input rate for a query's first batch; the processing rate stands in then
        input_rate = (with_data[-1].get("input_rows_per_s") or with_data[-1].get("processed_rows_per_s")) if with_data else None
        return {
            "windows": rows,
            "window_count": window_count,
            "group_by": list(self.group_by),
            "groups": [{"values": values, "label": group_label(values)} for values in shown],
            "watermark": latest.get("watermark"),
            "batch_id": latest.get("batch_id"),
            "batch_time": latest.get("timestamp"),
            "input_rows_per_s": input_rate,
            "processed_rows_per_s": latest.get("processed_rows_per_s"),
            "batch_duration_ms": latest.get("batch_duration_ms"),
            "dropped_late": sum(int(b.get("dropped_late") or 0) for b in batches.values()),
            "rejected": sum(int(b.get("rejected") or 0) for b in batches.values()),
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
