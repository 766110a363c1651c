"""The streaming job: Kafka -> parse/validate -> windowed totals -> sinks, plus the
dead-letter query, supervised until done, stopped or told to drain.

Signals: SIGINT/SIGTERM stop at once (the checkpoint stays consistent); SIGUSR1 drains:
process everything available now, then stop (`make run EVENTS=N` uses it).
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.errors import StreamingQueryException

from .config import AggregatorConfig, parse_aggregator_config
from .kafka_client import ClientErrorLog, KafkaSecurity, diagnose_connection, explain_failure
from .sinks import ConsoleSink, JsonLinesSink, SqliteResultsSink, WindowSinks, dead_letter_records
from .spark_session import create_spark_session
from .transform import aggregate_purchases, parse_events, rejected_messages, valid_events

QUALITY_METRICS = "quality"
MAX_RESTARTS = 5


def read_kafka(spark: SparkSession, config: AggregatorConfig) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.bootstrap_servers)
        .options(**config.security.spark_options())
        .option("subscribe", config.topic)
        .option("startingOffsets", config.starting_offsets)
    )
    if config.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", config.max_offsets_per_trigger)
    return reader.load()


def _with_trigger(writer, config: AggregatorConfig):
    if config.available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=config.trigger_interval)


def start_queries(spark: SparkSession, config: AggregatorConfig):
    """Start the windows query and, when a dead-letter topic is set, the dead-letter query."""
    raw = read_kafka(spark, config)
    parsed = parse_events(raw, config.price_max).observe(
        QUALITY_METRICS,
        F.count(F.lit(1)).alias("messages"),
        F.count("rejection_reason").alias("rejected"),
    )
    windows = aggregate_purchases(valid_events(parsed), config.window_duration, config.watermark_delay)
    sinks = []
    if config.console:
        sinks.append(ConsoleSink(config.session_timezone))
    if config.output_dir:
        sinks.append(JsonLinesSink(config.output_dir))
    if config.results_db:
        sinks.append(SqliteResultsSink(config.results_db))
    checkpoint = Path(config.checkpoint_dir)
    windows_writer = (
        windows.writeStream.queryName("windows").outputMode(config.output_mode)
        .option("checkpointLocation", str(checkpoint / "windows"))
        .foreachBatch(WindowSinks(sinks))
    )
    queries = [_with_trigger(windows_writer, config).start()]
    if config.dlq_topic:
        dlq_writer = (
            dead_letter_records(rejected_messages(parse_events(raw, config.price_max)))
            .writeStream.queryName("dead-letters").format("kafka")
            .option("kafka.bootstrap.servers", config.bootstrap_servers)
            .options(**config.security.spark_options())
            .option("topic", config.dlq_topic)
            .option("kafka.acks", "all")
            .option("checkpointLocation", str(checkpoint / "dead-letters"))
        )
        queries.append(_with_trigger(dlq_writer, config).start())
    return queries


@dataclass
class JobSummary:
    batches: int = 0
    messages: int = 0
    rejected: int = 0
    dropped_late: int = 0
    restarts: int = 0
    _last_batch: dict = field(default_factory=dict, repr=False)  # runId -> last batchId folded in

    def is_new(self, run_id: str, batch_id: int) -> bool:
        return batch_id > self._last_batch.get(run_id, -1)

    def record(self, progress: dict) -> str | None:
        """Fold one new progress report into the totals; return its one-line description."""
        self._last_batch[progress["runId"]] = progress["batchId"]
        quality = progress.get("observedMetrics", {}).get(QUALITY_METRICS, {})
        messages, rejected = int(quality.get("messages", 0)), int(quality.get("rejected", 0))
        operators = progress.get("stateOperators", [])
        dropped = sum(_per_store(op, "numRowsDroppedByWatermark") for op in operators)
        state_rows = sum(_per_store(op, "numRowsTotal") for op in operators)
        if progress.get("numInputRows", 0) == 0 and dropped == 0:
            return None  # a batch that only moved the watermark
        self.batches += 1
        self.messages += messages
        self.rejected += rejected
        self.dropped_late += dropped
        rate = progress.get("processedRowsPerSecond") or 0.0
        watermark = progress.get("eventTime", {}).get("watermark", "-")
        return (
            f"batch {progress['batchId']}: {messages} messages, {rejected} rejected, "
            f"{dropped} dropped as late, {state_rows} state rows, watermark {watermark}, {rate:,.0f} rows/s"
        )

    def line(self) -> str:
        return (
            f"summary: {self.batches} batches, {self.messages} messages, {self.messages - self.rejected} valid, "
            f"{self.rejected} rejected (dead-letter topic), {self.dropped_late} dropped as late by the watermark"
            + (f", {self.restarts} restarts from the checkpoint" if self.restarts else "")
        )


def _per_store(operator: dict, metric: str) -> int:
    """Spark 4's aggregation reports its restore and save steps as two state store
    instances per shuffle partition, each counting the same rows; count them once."""
    copies = max(1, int(operator.get("numStateStoreInstances", 0)) // max(1, int(operator.get("numShufflePartitions", 1))))
    return int(operator.get(metric, 0)) // copies


class JobSignals:
    def __init__(self):
        self.stop = threading.Event()
        self.drain = threading.Event()

    def install(self) -> "JobSignals":
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGUSR1, lambda *_: self.drain.set())
        return self


def _report(queries, summary: JobSummary, out) -> None:
    for progress in queries[0].recentProgress:  # the last ~100 reports, oldest first
        if not summary.is_new(str(progress.runId), progress.batchId):
            continue  # already folded in: skip the JSON round trip
        line = summary.record(json.loads(progress.json))
        if line:
            print(line, file=out, flush=True)


def run_job(config: AggregatorConfig, signals: JobSignals | None = None, out=sys.stderr) -> JobSummary:
    signals = signals or JobSignals()
    spark = create_spark_session("PurchaseAggregator", config.master, config.shuffle_partitions, config.session_timezone)
    summary = JobSummary()
    deadline = time.monotonic() + config.timeout_s if config.timeout_s else None
    queries = start_queries(spark, config)
    try:
        while True:
            try:
                queries[0].awaitTermination(0.5)
            except StreamingQueryException:
                pass  # handled below, with the other queries
            _report(queries, summary, out)
            failed = next((q.exception() for q in queries if not q.isActive and q.exception() is not None), None)
            if failed is not None:
                queries = _restart(spark, config, queries, summary, failed, out)
                continue
            if not any(q.isActive for q in queries):
                break  # --available-now finished
            if signals.stop.is_set():
                print("stopping (signal received)", file=out, flush=True)
                break
            if signals.drain.is_set() or (deadline and time.monotonic() > deadline):
                for q in queries:
                    q.processAllAvailable()
                break
    finally:
        for q in queries:
            q.stop()
        _report(queries, summary, out)
        print(summary.line(), file=out, flush=True)
        spark.stop()
    return summary


def _restart(spark: SparkSession, config: AggregatorConfig, queries, summary: JobSummary, error, out):
    """A failed query (e.g. the broker went away for longer than the client retries) is
    restarted from its checkpoint, with backoff: nothing is lost or counted twice."""
    for q in queries:
        q.stop()
    if summary.restarts >= MAX_RESTARTS:
        raise RuntimeError(f"query failed {summary.restarts + 1} times; last error: {_first_line(error)}")
    summary.restarts += 1
    print(f"query failed ({_first_line(error)}); restarting from the checkpoint ({summary.restarts}/{MAX_RESTARTS})", file=out, flush=True)
    time.sleep(min(2**summary.restarts, 30))
    return start_queries(spark, config)


def _first_line(exc) -> str:
    text = str(getattr(exc, "desc", None) or exc)
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


class BrokerUnreachable(RuntimeError):
    pass


def check_broker(bootstrap_servers: str, topic: str, timeout_s: float = 10.0, out=sys.stderr,
                 security: KafkaSecurity | None = None) -> None:
    """Fail fast with one line when no broker answers, or it refuses this client (login,
    TLS, ACL): Spark's own client would retry for minutes. A missing topic is only a
    warning: the job waits for it."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    security = security or KafkaSecurity()
    with ClientErrorLog() as log:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), bootstrap_timeout_ms=int(timeout_s * 1000),
                                     request_timeout_ms=int(timeout_s * 1000), **security.kafka_python_kwargs())
        except KafkaError as exc:
            cause = explain_failure(exc, security, bootstrap_servers, topic, "read", log) or diagnose_connection(security, bootstrap_servers)
            raise BrokerUnreachable(cause or f"cannot reach a Kafka broker at {bootstrap_servers} ({exc}); is it running? try `make kafka`") from None
    try:
        topics = admin.describe_topics([topic])
    except KafkaError as exc:
        topics = [{"error_code": getattr(exc, "errno", -1), "error": exc}]
    finally:
        admin.close()
    error = topics[0].get("error_code", 0) if topics else 0
    if error == 29:  # TOPIC_AUTHORIZATION_FAILED
        raise BrokerUnreachable(explain_failure("TopicAuthorizationFailedError", security, bootstrap_servers, topic, "read"))
    if error:
        print(f"warning: topic '{topic}' does not exist yet at {bootstrap_servers}; waiting for it", file=out, flush=True)


def main(argv: list[str] | None = None) -> int:
    config = parse_aggregator_config(argv)
    try:
        check_broker(config.bootstrap_servers, config.topic, security=config.security)
    except BrokerUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(
        f"aggregating topic '{config.topic}' at {config.bootstrap_servers} on {config.master}: "
        f"{config.window_duration} windows, watermark {config.watermark_delay}, {config.output_mode} mode, "
        f"{'available-now' if config.available_now else 'trigger ' + config.trigger_interval}, checkpoint {config.checkpoint_dir}",
        file=sys.stderr, flush=True,
    )
    try:
        run_job(config, JobSignals().install())
    except Exception as exc:  # one clear line instead of a JVM stack trace
        print(f"error: {_first_line(exc)}", file=sys.stderr, flush=True)
        return 1
    return 0
