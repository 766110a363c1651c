"""Where windowed totals go. Each micro-batch's windows (window_state.Window: the ones it
changed, or closed in append mode, a handful) are handed to every sink, in window order.

All sinks are safe to replay: after a crash Spark re-runs the last batch with the same
batch id and the same rows, and each sink makes that a no-op or an identical rewrite.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, TextIO
from zoneinfo import ZoneInfo

from .kafka_client import KafkaSecurity

WINDOW_COLUMNS = ("window_start", "window_end", "total_purchase", "orders")


class WindowRow(Protocol):
    window_start: datetime
    window_end: datetime
    total_purchase: int
    orders: int


class WindowSink(Protocol):
    def write(self, batch_id: int, rows: Sequence[WindowRow]) -> None: ...


def _as_utc(ts: datetime) -> datetime:
    """Spark hands back naive datetimes in the driver's local zone; make them explicit UTC."""
    return ts.astimezone(timezone.utc) if ts.tzinfo else ts.astimezone().astimezone(timezone.utc)


def _iso_utc(ts: datetime) -> str:
    return _as_utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConsoleSink:
    """The table users know from the original pipeline, sorted by window."""

    def __init__(self, timezone_name: str = "UTC", out: TextIO = sys.stdout):
        self._zone = ZoneInfo(timezone_name)
        self._out = out

    def _local(self, ts: datetime) -> str:
        return _as_utc(ts).astimezone(self._zone).strftime("%Y-%m-%d %H:%M:%S")

    def write(self, batch_id: int, rows: Sequence[WindowRow]) -> None:
        if not rows:
            return  # a batch that only moved the watermark changed no window
        cells = [[self._local(r.window_start), self._local(r.window_end), str(r.total_purchase), str(r.orders)] for r in rows]
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(WINDOW_COLUMNS)]
        rule = "+" + "+".join("-" * w for w in widths) + "+"
        lines = ["-------------------------------------------", f"Batch: {batch_id}", "-------------------------------------------", rule]
        lines.append("|" + "|".join(h.rjust(w) for h, w in zip(WINDOW_COLUMNS, widths, strict=True)) + "|")
        lines.append(rule)
        lines += ["|" + "|".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + "|" for row in cells]
        lines.append(rule)
        print("\n".join(lines) + "\n", file=self._out, flush=True)


class JsonLinesSink:
    """`--output-dir`: one file per batch, `batch-<id>.jsonl`, written atomically, so a
    replayed batch rewrites its own file. Read the files in name order: the last line
    for a window holds its current total."""

    def __init__(self, output_dir: str | Path):
        self._dir = Path(output_dir)
        self._dir.mkdir(parents=True, exist_ok=True)

    def write(self, batch_id: int, rows: Sequence[WindowRow]) -> None:
        if not rows:
            return
        target = self._dir / f"batch-{batch_id:012d}.jsonl"
        tmp = target.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for r in rows:
                f.write(json.dumps(window_record(r, batch_id)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)


def window_record(row: WindowRow, batch_id: int) -> dict:
    """A window as the JSON-lines files and the results topic carry it."""
    return {
        "window_start": _iso_utc(row.window_start),
        "window_end": _iso_utc(row.window_end),
        "total_purchase": int(row.total_purchase),
        "orders": int(row.orders),
        "batch_id": batch_id,
    }


class KafkaPublisher:
    """A small kafka-python producer for the job's own outputs (results and metrics):
    acks from every in-sync replica, flushed before the batch counts as done."""

    def __init__(self, bootstrap_servers: str, security: KafkaSecurity):
        from kafka import KafkaProducer

        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","), acks="all", linger_ms=5, retries=10, **security.kafka_python_kwargs()
        )

    def send(self, topic: str, value: dict, key: str | None = None) -> None:
        self._producer.send(topic, value=json.dumps(value).encode(), key=key.encode() if key is not None else None)

    def flush(self, timeout_s: float = 60.0) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=10)


class KafkaResultsSink:
    """`--results-topic`: the latest total per window in a compacted topic keyed by the
    window start. A replayed batch sends the same keys and values, so a reader of the
    latest value per key never sees a window counted twice."""

    def __init__(self, publisher: KafkaPublisher, topic: str):
        self._publisher = publisher
        self._topic = topic

    def write(self, batch_id: int, rows: Sequence[WindowRow]) -> None:
        for r in rows:
            record = window_record(r, batch_id)
            self._publisher.send(self._topic, record, key=record["window_start"])
        self._publisher.flush()


def read_json_lines_totals(output_dir: str | Path) -> dict[str, tuple[int, int]]:
    """window_start (ISO) -> (total_purchase, orders), the latest line per window."""
    totals: dict[str, tuple[int, int]] = {}
    for path in sorted(Path(output_dir).glob("batch-*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            totals[rec["window_start"]] = (rec["total_purchase"], rec["orders"])
    return totals


def read_results_topic(bootstrap_servers: str, topic: str, security: KafkaSecurity | None = None) -> dict[str, tuple[int, int]]:
    """window_start (ISO) -> (total_purchase, orders): the latest value per key of the results topic."""
    from .reference import read_topic

    latest = {record.key.decode(): json.loads(record.value) for record in read_topic(bootstrap_servers, topic, security=security)}
    return {key: (value["total_purchase"], value["orders"]) for key, value in latest.items()}


class SqliteResultsSink:
    """`--results-db`: the durable results table, one row per window holding its latest
    total. Each batch commits in one transaction together with its batch id; a batch id
    at or below the last committed one is skipped, so a replay changes nothing."""

    def __init__(self, path: str | Path):
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS window_totals (
                    window_start TEXT PRIMARY KEY, window_end TEXT NOT NULL,
                    total_purchase INTEGER NOT NULL, orders INTEGER NOT NULL, batch_id INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS committed_batches (batch_id INTEGER PRIMARY KEY);
                """
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=30, isolation_level=None)

    def write(self, batch_id: int, rows: Sequence[WindowRow]) -> None:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            last = db.execute("SELECT MAX(batch_id) FROM committed_batches").fetchone()[0]
            if last is not None and batch_id <= last:
                db.execute("ROLLBACK")
                return
            db.executemany(
                "INSERT INTO window_totals VALUES (?, ?, ?, ?, ?) ON CONFLICT(window_start) DO UPDATE SET "
                "window_end=excluded.window_end, total_purchase=excluded.total_purchase, orders=excluded.orders, "
                "batch_id=excluded.batch_id",
                [(_iso_utc(r.window_start), _iso_utc(r.window_end), int(r.total_purchase), int(r.orders), batch_id) for r in rows],
            )
            db.execute("INSERT INTO committed_batches VALUES (?)", (batch_id,))
            db.execute("COMMIT")
        finally:
            db.close()


def read_results_db(path: str | Path) -> dict[str, tuple[int, int]]:
    db = sqlite3.connect(path)
    try:
        return {ws: (total, orders) for ws, total, orders in db.execute("SELECT window_start, total_purchase, orders FROM window_totals")}
    finally:
        db.close()
