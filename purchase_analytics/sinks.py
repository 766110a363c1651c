"""Where windowed totals go. The rows Spark's aggregation emits for a micro-batch (the
windows it changed, or closed in append mode, with their group columns) are handed to every
sink, in window order.

All sinks are safe to replay: after a crash Spark re-runs the last batch with the same
batch id and the same rows, and each sink makes that a no-op or an identical rewrite.

A batch is identified by the query's id and its batch id. The query id is Spark's stable id
of the windows query (`<checkpoint>/windows-query/metadata`): the same across restarts on a
checkpoint, new for a new checkpoint, whose batch ids start again at 0. So a run on a new
checkpoint never skips, replaces or mixes another run's results; a reader (read_json_lines_totals)
takes the run that wrote last, or the one asked for. The records' format is records.py's.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from .failures import OutputRefused, OutputRetriable
from .kafka_client import KafkaSecurity, batch_bytes, describe_error, explain_write_failure, is_retriable_write_error
from .records import WindowRow, as_utc, record_key, results_topic_key, window_record

WINDOW_COLUMNS = ("window_start", "window_end", "total_purchase", "orders")


class ConsoleSink:
    """The table users know from the original pipeline, sorted by window: one column per
    group field (--group-by) after the window's."""

    def __init__(self, timezone_name: str = "UTC", group_by: tuple[str, ...] = (), out: TextIO = sys.stdout):
        self._zone = ZoneInfo(timezone_name)
        self._columns = (*WINDOW_COLUMNS[:2], *group_by, *WINDOW_COLUMNS[2:])
        self._out = out

    def _cell(self, value) -> str:
        if isinstance(value, datetime):
            return as_utc(value).astimezone(self._zone).strftime("%Y-%m-%d %H:%M:%S")
        return str(value)

    def write(self, batch_id: int, rows: Sequence[WindowRow], query_id: str = "") -> None:
        if not rows:
            return  # a batch that only moved the watermark changed no window
        cells = [[self._cell(r[c]) for c in self._columns] for r in rows]
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(self._columns)]
        rule = "+" + "+".join("-" * w for w in widths) + "+"
        lines = ["-------------------------------------------", f"Batch: {batch_id}", "-------------------------------------------", rule]
        lines.append("|" + "|".join(h.rjust(w) for h, w in zip(self._columns, widths, strict=True)) + "|")
        lines.append(rule)
        lines += ["|" + "|".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + "|" for row in cells]
        lines.append(rule)
        print("\n".join(lines) + "\n", file=self._out, flush=True)


class JsonLinesSink:
    """`--output-dir`: one file per batch, `batch-<id>-<query id>.jsonl`, written atomically,
    so a replayed batch rewrites its own file and another run's files are never touched.
    Read one run's files in name order: the last line for a window holds its current total
    (read_json_lines_totals)."""

    def __init__(self, output_dir: str | Path, group_by: tuple[str, ...] = ()):
        self._dir = Path(output_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._group_by = group_by

    def write(self, batch_id: int, rows: Sequence[WindowRow], query_id: str = "") -> None:
        if not rows:
            return
        target = self._dir / json_lines_name(batch_id, query_id)
        tmp = target.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for r in rows:
                f.write(json.dumps(window_record(r, batch_id, self._group_by, query_id)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)


def json_lines_name(batch_id: int, query_id: str = "") -> str:
    return f"batch-{batch_id:012d}-{query_id}.jsonl" if query_id else f"batch-{batch_id:012d}.jsonl"


class KafkaPublisher:
    """A small kafka-python producer for the job's own outputs (results and metrics): acks
    from every in-sync replica, and every record's outcome checked before the batch counts
    as done. `flush` waits for the records sent since the last flush (by this thread: the
    job's batches and its progress reporter share one publisher) and raises for any that
    failed: `OutputRetriable` for a failure a restart from the checkpoint heals (too few
    in-sync replicas, a leader moving, the broker away, a timeout), else `OutputRefused`,
    whose message is one line naming the topic, the cause and the fix. kafka-python's own
    flush returns normally after a failed request (or raises "Future not done" when it split
    a batch the broker refused), so the records' futures are what tell.

    After a failure the producer is replaced: an idempotent producer that had a batch
    refused refuses every later record with the same error."""

    # A record is given up on (its future fails) this long after it was sent, so a flush that
    # waits a little longer always ends with every record's outcome known: none is left to
    # land later, after the same window's newer total written by a replay.
    DELIVERY_TIMEOUT_S = 60.0
    ROLES = {"results": ("results topic", "--results-topic"), "metrics": ("metrics topic", "--metrics-topic")}

    def __init__(self, bootstrap_servers: str, security: KafkaSecurity, topics: Mapping[str, str] | None = None):
        """`topics`: topic -> role ("results", "metrics"), for the error lines."""
        self._bootstrap_servers = bootstrap_servers
        self._security = security
        self._roles = dict(topics or {})
        self._lock = threading.Lock()
        self._producer = None
        self._sent = threading.local()  # .records: [(future, topic, bytes, producer)] since this thread's last flush

    @classmethod
    def for_job(cls, config) -> KafkaPublisher:
        """The publisher of an AggregatorConfig's results and metrics topics."""
        topics = {config.metrics_topic: "metrics", config.results_topic: "results"}
        return cls(config.bootstrap_servers, config.security, {t: role for t, role in topics.items() if t})

    def name_topic(self, topic: str, role: str) -> None:
        """Say which of the job's outputs `topic` is ("results", "metrics"), for the error lines."""
        self._roles[topic] = role

    def _current(self):
        with self._lock:
            if self._producer is None:
                from kafka import KafkaProducer

                self._producer = KafkaProducer(
                    bootstrap_servers=self._bootstrap_servers.split(","),
                    acks="all",
                    linger_ms=5,
                    retries=10,
                    delivery_timeout_ms=int(self.DELIVERY_TIMEOUT_S * 1000),
                    **self._security.kafka_python_kwargs(),
                )
            return self._producer

    def _records(self) -> list:
        if not hasattr(self._sent, "records"):
            self._sent.records = []
        return self._sent.records

    def send(self, topic: str, value: dict, key: str | None = None) -> None:
        data, key_data = json.dumps(value).encode(), key.encode() if key is not None else None
        size = batch_bytes(key_data, data)
        producer = None
        try:
            producer = self._current()
            future = producer.send(topic, value=data, key=key_data)
        except Exception as exc:  # refused before it was sent: no metadata in time, too large for the producer
            self._records().clear()
            self._fail([(exc, topic, size)], producer)
        self._records().append((future, topic, size, producer))

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every record this thread sent since its last flush is written, or
        raise OutputRetriable / OutputRefused for those that were not."""
        records, self._sent.records = self._records(), []
        if not records:
            return
        from kafka.errors import KafkaError

        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.DELIVERY_TIMEOUT_S + 15)
        for producer in {id(r[3]): r[3] for r in records}.values():
            try:
                producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaError:  # its own timeout, or a batch it split: the futures below tell
                pass
        failures = []
        for future, topic, size, _ in records:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaError as exc:  # the broker's answer, or KafkaTimeoutError: no answer by the deadline
                failures.append((exc, topic, size))
        if failures:
            self._fail(failures, *{id(r[3]): r[3] for r in records}.values())

    def _fail(self, failures: list[tuple[BaseException, str, int]], *producers) -> None:
        """Replace the failed producers, then raise: OutputRefused when any failure is one a
        new attempt cannot get past, else OutputRetriable."""
        self._retire(producers)
        refused = next(((e, t, n) for e, t, n in failures if not is_retriable_write_error(e)), None)
        if refused:
            error, topic, size = refused
            what, option = self.ROLES.get(self._roles.get(topic, ""), ("output topic", None))
            line = explain_write_failure(error, topic, what, self._bootstrap_servers, self._security, size, option)
            raise OutputRefused(line) from None
        error, topic, _ = failures[0]
        what = self.ROLES.get(self._roles.get(topic, ""), ("output topic", None))[0]
        topics = ", ".join(sorted({f"'{t}'" for _, t, _ in failures}))
        raise OutputRetriable(
            f"{len(failures)} record(s) not written to {what} {topics} at {self._bootstrap_servers} ({describe_error(error)}); "
            f"a restart from the checkpoint writes them again"
        ) from None

    def _retire(self, producers) -> None:
        with self._lock:
            retired = [p for p in producers if p is not None and p is self._producer]
            if retired:
                self._producer = None
        for producer in retired:
            try:  # the records other threads sent to it still get their outcome (by the delivery timeout)
                producer.close(timeout=self.DELIVERY_TIMEOUT_S + 15)
            except Exception:  # this thread's records' outcomes are known: nothing to report here
                pass

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=10)
            except Exception:  # a failed record was reported by flush; closing is not the place to fail the job
                pass


class KafkaResultsSink:
    """`--results-topic`: the latest total per window in a compacted topic keyed by the
    window start and group values. A replayed batch sends the same keys and values, so a reader of the
    latest value per key never sees a window counted twice. A batch is done once every
    record is written (KafkaPublisher.flush raises otherwise)."""

    def __init__(self, publisher: KafkaPublisher, topic: str, group_by: tuple[str, ...] = ()):
        self._publisher = publisher
        self._topic = topic
        self._group_by = group_by
        publisher.name_topic(topic, "results")

    def write(self, batch_id: int, rows: Sequence[WindowRow], query_id: str = "") -> None:
        for r in rows:
            record = window_record(r, batch_id, self._group_by, query_id)
            self._publisher.send(self._topic, record, key=results_topic_key(record))
        self._publisher.flush()


def json_lines_runs(output_dir: str | Path) -> dict[str, list[Path]]:
    """query id -> its batch files in batch order, the run that wrote last at the end (by the
    files' modification times). Files of a version without query ids count as the run ""."""
    runs: dict[str, list[Path]] = {}
    for path in sorted(Path(output_dir).glob("batch-*.jsonl")):
        parts = path.stem.split("-", 2)
        runs.setdefault(parts[2] if len(parts) == 3 else "", []).append(path)
    return dict(sorted(runs.items(), key=lambda run: (max(p.stat().st_mtime_ns for p in run[1]), run[0])))


def read_json_lines_totals(output_dir: str | Path, query_id: str | None = None) -> dict[str | tuple, tuple[int, int]]:
    """record_key -> (total_purchase, orders), the latest line per window (and group), of
    the run `query_id`, or of the run that wrote last."""
    runs = json_lines_runs(output_dir)
    if query_id is None and runs:
        query_id = list(runs)[-1]
    totals: dict[str | tuple, tuple[int, int]] = {}
    for path in runs.get(query_id, []):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            totals[record_key(rec)] = (rec["total_purchase"], rec["orders"])
    return totals


class ResultsDbMismatch(RuntimeError):
    """The results database holds windows of another shape (other group fields)."""


class SqliteResultsSink:
    """`--results-db`: the durable results table, one row per run and window (and group,
    whose fields are part of the key) holding its latest total. Each batch commits in one
    transaction together with its query id and batch id; a batch id at or below the last
    one its query committed is skipped, so a replay changes nothing, and a run on a new
    checkpoint (a new query id, batch ids from 0) writes rows of its own."""

    def __init__(self, path: str | Path, group_by: tuple[str, ...] = ()):
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._columns = ("window_start", "window_end", *group_by, "total_purchase", "orders", "batch_id", "query_id")
        self._group_by = group_by
        key = ", ".join(("query_id", "window_start", *group_by))
        groups = "".join(f"{g} NOT NULL, " for g in group_by)
        create = f"""
            CREATE TABLE IF NOT EXISTS window_totals (
                window_start TEXT NOT NULL, window_end TEXT NOT NULL, {groups}
                total_purchase INTEGER NOT NULL, orders INTEGER NOT NULL, batch_id INTEGER NOT NULL,
                query_id TEXT NOT NULL DEFAULT '',
                PRIMARY KEY ({key}));
            CREATE TABLE IF NOT EXISTS committed_batches (
                query_id TEXT NOT NULL DEFAULT '', batch_id INTEGER NOT NULL, PRIMARY KEY (query_id, batch_id));
            """
        with self._connect() as db:
            found = self._table_columns(db, "window_totals")
            if found == self._columns[:-1] and self._table_columns(db, "committed_batches") == ("batch_id",):
                # written by a version without query ids: its rows become the run ""
                db.executescript(
                    "BEGIN; ALTER TABLE window_totals RENAME TO window_totals_before;"
                    "ALTER TABLE committed_batches RENAME TO committed_batches_before;"
                    f"{create}"
                    "INSERT INTO window_totals SELECT *, '' FROM window_totals_before; DROP TABLE window_totals_before;"
                    "INSERT INTO committed_batches SELECT '', batch_id FROM committed_batches_before; DROP TABLE committed_batches_before;"
                    "COMMIT;"
                )
            elif not found:
                db.executescript(create)
            found = self._table_columns(db, "window_totals")
        if found != self._columns:
            shown = ", ".join(c for c in found if c != "query_id")
            raise ResultsDbMismatch(
                f"results database {path} holds windows with the columns {shown}, and this job writes "
                f"{', '.join(self._columns[:-1])} (another --group-by); give this job its own --results-db"
            )
        self._upsert = (
            f"INSERT INTO window_totals VALUES ({', '.join('?' for _ in self._columns)}) ON CONFLICT({key}) DO UPDATE SET "
            "window_end=excluded.window_end, total_purchase=excluded.total_purchase, orders=excluded.orders, batch_id=excluded.batch_id"
        )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=30, isolation_level=None)

    @staticmethod
    def _table_columns(db: sqlite3.Connection, table: str) -> tuple[str, ...]:
        return tuple(row[1] for row in db.execute(f"PRAGMA table_info({table})"))

    def write(self, batch_id: int, rows: Sequence[WindowRow], query_id: str = "") -> None:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            last = db.execute("SELECT MAX(batch_id) FROM committed_batches WHERE query_id = ?", (query_id,)).fetchone()[0]
            if last is not None and batch_id <= last:
                db.execute("ROLLBACK")
                return
            db.executemany(self._upsert, [tuple(window_record(r, batch_id, self._group_by, query_id).values()) for r in rows])
            db.execute("INSERT INTO committed_batches (query_id, batch_id) VALUES (?, ?)", (query_id, batch_id))
            db.execute("COMMIT")
        finally:
            db.close()
