"""The windowed totals as records: what a window row of Spark's aggregation becomes in the
JSON-lines files, the results database and the results topic, and the keys that identify
one. The writers (sinks) and the readers (the dashboard, the benchmark, the tests) share it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Protocol


class WindowRow(Protocol):
    """A row Spark's aggregation emitted (a pyspark Row): window_start, window_end, the
    group fields, total_purchase, orders, read by name."""

    def __getitem__(self, name: str): ...


def as_utc(ts: datetime) -> datetime:
    """Spark hands back naive datetimes in the driver's local zone; make them explicit UTC."""
    return ts.astimezone(timezone.utc) if ts.tzinfo else ts.astimezone().astimezone(timezone.utc)


def _iso_utc(ts: datetime) -> str:
    return as_utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_key(row: WindowRow, group_by: tuple[str, ...]) -> tuple:
    """A window row's identity: its start and end (epoch seconds), and its group's values."""
    return (row["window_start"].timestamp(), row["window_end"].timestamp(), *(row[g] for g in group_by))


def window_record(row: WindowRow, batch_id: int, group_by: tuple[str, ...] = (), query_id: str = "") -> dict:
    """A window as the JSON-lines files, SQLite and the results topic carry it: its group's
    values (--group-by) after the window's start and end; the batch and its query's id last."""
    return {
        "window_start": _iso_utc(row["window_start"]),
        "window_end": _iso_utc(row["window_end"]),
        **{g: row[g] for g in group_by},
        "total_purchase": int(row["total_purchase"]),
        "orders": int(row["orders"]),
        "batch_id": batch_id,
        "query_id": query_id,
    }


RECORD_FIELDS = ("window_start", "window_end", "total_purchase", "orders", "batch_id", "query_id")


def record_key(record: dict) -> str | tuple:
    """Which window (and group) a record is the total of: its start (ISO-8601 UTC), with
    the values of its group fields after it when it has any."""
    groups = tuple(v for k, v in record.items() if k not in RECORD_FIELDS)
    return (record["window_start"], *groups) if groups else record["window_start"]


def results_topic_key(record: dict) -> str:
    """The results topic's key: the window start, then each group value, then the run's
    query id (when the record has one), `|`-separated: each run keeps its own windows."""
    key = record_key(record)
    parts = [key] if isinstance(key, str) else [str(part) for part in key]
    return "|".join([*parts, record["query_id"]] if record.get("query_id") else parts)
