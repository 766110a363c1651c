"""Benchmark peer: the job's windows in Flink SQL, run by PyFlink in a local mini-cluster.

A bounded Kafka source (earliest offset to the end offsets at job start), JSON format,
a watermark `event_time - <watermark delay>` on valid rows, `TUMBLE` windows with
SUM(price) and COUNT(*), the job's value rules as WHERE clauses (`bench/flink_sql.py`).
The windows and the count of valid events are collected from one job; `messages` are the
topic's offsets. Run with .venv-flink (make bench-peers):
`.venv-flink/bin/python -m bench.flink_peer --bootstrap-servers B --topic T`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import timezone
from pathlib import Path

from purchase_analytics.config import PROJECT_ROOT
from purchase_analytics.options import positive_int

from . import flink_sql
from .peer_common import PeerArgs, PeerError, PeerResult, divert_stdout, import_peer_module, parse_peer_args, run_peer

# What Flink's JSON format (with 'json.ignore-parse-errors') lets through that the job's
# rules reject, each one seen on Flink 2.2.1 with a crafted message (tests/test_peers.py
# sends them): the WHERE rules catch what becomes NULL or out of range, not the rest.
JSON_FORMAT_NOTES = (
    "Flink's JSON format is laxer than the job's rules. Accepted here, rejected by the job: "
    'numbers as strings ("price": "200", " 3700 " trimmed, "ts": "1700000000"); '
    "fractions and exponents in integer fields, truncated (price 300.7 -> 300, 4e2 -> 400, 3800.0 -> 3800, customer_id 5.5 -> 5); "
    'non-strings in string fields, as their text (color 7 -> "7", true -> "true", {"a":1} -> \'{"a":1}\', order_id 12 -> "12"); '
    "content after the object ({...} x, {...}{...}: the first object is read); "
    "duplicate keys (the first value wins); UTF-16 values and a UTF-8 byte-order mark; "
    'lone surrogate escapes ("\\ud800" becomes "?"). '
    "Same outcome by other means: a missing or null field, a boolean or a too-large integer in a number field "
    "become NULL and fail the IS NOT NULL rules. "
    "Dropped silently by 'json.ignore-parse-errors' (rejected = messages - valid, no reasons): not JSON, "
    "invalid UTF-8, NaN/Infinity, a non-object or null value, tombstones, nesting beyond 1000 levels."
)


def connector_jars(jars_dir: Path) -> list[Path]:
    jars = sorted(jars_dir.glob("*.jar"))
    if not jars:
        raise PeerError(f"no Flink Kafka connector jar in {jars_dir}: run make bench-peers")
    return jars


def end_offsets(bootstrap_servers: str, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (earliest, end) offsets, to count the messages the job reads."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers.split(","), request_timeout_ms=30_000)
    except KafkaError as exc:
        raise PeerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from None
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            raise PeerError(f"topic {topic!r} not found at {bootstrap_servers}")
        begin, end = consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)
        return {tp.partition: (begin[tp], end[tp]) for tp in partitions}
    finally:
        consumer.close()


def check_java() -> None:
    java = Path(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
    try:
        subprocess.run([str(java), "-version"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise PeerError(f"Java 17 is needed for Flink ({java} does not run); install a JDK 17 or set JAVA_HOME") from None


def kafka_options(args: PeerArgs, max_poll_records: int) -> dict[str, str]:
    return {
        "connector": "kafka",
        "topic": args.topic,
        "properties.bootstrap.servers": args.bootstrap_servers,
        "properties.group.id": f"bench-flink-{uuid.uuid4().hex[:12]}",
        "scan.startup.mode": "earliest-offset",
        "scan.bounded.mode": "latest-offset",
        "properties.max.poll.records": str(max_poll_records),  # the job's consumers' setting: same footing
        "format": "json",
        "json.ignore-parse-errors": "true",
        # One watermark per row, not every 200 ms: which rows are late then follows the
        # data, not how many rows the JVM read in 200 ms of a backfill.
        "scan.watermark.emit.strategy": "on-event",
    }


def run_job(args: PeerArgs, result: PeerResult, jars: list[Path], parallelism: int, max_poll_records: int) -> None:
    from pyflink.common import RowKind
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    config.set("pipeline.jars", ";".join(p.resolve().as_uri() for p in jars))
    config.set("parallelism.default", str(parallelism))
    config.set("table.local-time-zone", "UTC")  # windows aligned on UTC, like Spark's SESSION_TIMEZONE
    # The running count of valid events updates once per mini-batch, not once per row.
    config.set("table.exec.mini-batch.enabled", "true")
    config.set("table.exec.mini-batch.allow-latency", "1 s")
    config.set("table.exec.mini-batch.size", "10000")
    valid = flink_sql.valid_condition(args.price_max, args.max_future_s)
    env.execute_sql(flink_sql.source_table_ddl(kafka_options(args, max_poll_records), args.watermark_s, valid))
    env.execute_sql(flink_sql.valid_view_ddl(valid))
    table_result = env.execute_sql(flink_sql.windows_query(args.window_s))
    result.startup_s = result.extra["submit_s"] = round(result.since_start(), 3)
    with table_result.collect() as rows:
        for row in rows:
            if "first_result_s" not in result.extra:
                result.extra["first_result_s"] = round(result.since_start(), 3)
            kind, window_start, total, orders = row
            if kind == "valid":
                if row.get_row_kind() in (RowKind.INSERT, RowKind.UPDATE_AFTER):
                    result.valid = orders
            else:
                start_s = int(window_start.replace(tzinfo=timezone.utc).timestamp())
                result.windows[start_s] = [total, orders]
    result.dropped_late = result.valid - sum(orders for _, orders in result.windows.values())


def flink_options(p: argparse.ArgumentParser) -> None:
    p.add_setting("--parallelism", "BENCH_FLINK_PARALLELISM", positive_int, help="Flink job parallelism")
    p.add_setting(
        "--max-poll-records",
        "KAFKA_MAX_POLL_RECORDS",
        positive_int,
        help="Kafka's max.poll.records, as the job's consumers",
    )
    p.add_setting("--jars-dir", "FLINK_CONNECTOR_JARS_DIR", str, help="Flink's Kafka SQL connector (make bench-peers)")


def run(argv: list[str] | None) -> PeerResult:
    args, extra = parse_peer_args("python -m bench.flink_peer", __doc__, argv, flink_options)
    result = PeerResult("flink_sql", import_peer_module("pyflink.version", "flink_sql").__version__, args)
    jars = connector_jars(PROJECT_ROOT / extra.jars_dir)
    check_java()
    ends = end_offsets(args.bootstrap_servers, args.topic)
    result.messages = sum(end - begin for begin, end in ends.values())
    result.extra.update(partitions=len(ends), parallelism=extra.parallelism, notes=JSON_FORMAT_NOTES)
    result.stdout = divert_stdout()  # the gateway JVM writes to fd 1 too (log4j's own errors at shutdown)
    with tempfile.TemporaryDirectory(prefix="flink-peer-logs-") as log_dir:
        os.environ["FLINK_LOG_DIR"] = log_dir  # the gateway JVM's log, instead of inside the venv
        try:
            run_job(args, result, jars, extra.parallelism, extra.max_poll_records)
        except Exception as exc:  # Py4J carries the Java exception; its first line names the cause
            if type(exc).__module__.startswith(("pyflink", "py4j")):
                raise PeerError(f"the Flink job failed: {str(exc).strip().splitlines()[0][:500]}") from None
            raise
    return result


def main(argv: list[str] | None = None) -> int:
    return run_peer(run, argv)


if __name__ == "__main__":
    sys.exit(main())
