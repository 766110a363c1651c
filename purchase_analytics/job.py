"""The streaming job: one query reads Kafka, parses and validates each message once, and
each micro-batch yields both outputs: the dead letters, and the windowed totals for the
sinks (BatchHandler). Supervised until done, stopped or told to drain.

Signals: SIGINT/SIGTERM stop at once (the checkpoint stays consistent); SIGUSR1 drains:
process everything available now, then stop (`make run EVENTS=N` uses it).
"""

from __future__ import annotations

import json
import signal
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

from py4j.java_gateway import JavaClass
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession

from .checkpoint import (
    OFFSETS_DIR,
    CheckpointError,
    CheckpointLock,
    checkpoint_files,
    earliest_batch_time_s,
    planned_batch,
    query_checkpoint,
    use_checkpoint_file_manager,
    verify_source,
)
from .config import AggregatorConfig, interval_seconds, load_settings, parse_aggregator_config
from .failures import classify_failure, first_line
from .kafka_client import ClientErrorLog, KafkaSecurity, diagnose_connection, explain_failure
from .progress import BatchProgress
from .signals import set_on_signal
from .sinks import ConsoleSink, JsonLinesSink, KafkaPublisher, KafkaResultsSink, SqliteResultsSink
from .spark_session import SparkConfig, create_spark_session
from .transform import STREAM_COLUMNS, CheckedBatch, DeadLetterRecords, parse_events, rejected_messages, window_partials
from .window_state import US, BatchOutcome, Partial, StateLog, WindowState

QUERY_NAME = "purchases"
STATE_DIR = "window-state"

MAX_RESTARTS = 5  # in a row: a batch that completes after a restart gives them back


def read_kafka(spark: SparkSession, config: AggregatorConfig) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.bootstrap_servers)
        .options(**config.security.spark_options())
        .option("subscribe", config.topic)
        .option("startingOffsets", config.starting_offsets)
        # Kafka's default of 500 records a poll: 2,000 polls per partition for a 1M-event batch,
        # each through the consumer's fetch and network bookkeeping (docs/performance.md, round 13)
        .option("kafka.max.poll.records", config.max_poll_records)
    )
    if config.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", config.max_offsets_per_trigger)
    return reader.load()


def _with_trigger(writer, config: AggregatorConfig):
    if config.available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=config.trigger_interval)


def start_queries(spark: SparkSession, config: AggregatorConfig, handler: BatchHandler, parse=parse_events):
    """Start the job's query (a list, for the supervisor): Kafka -> parse -> `handler`.
    (`parse` is the benchmark's seam for its from_json-only reference.) The one rule that
    depends on the batch's time is checked by the handler: in the query's generated code the
    time would change the code in every batch (transform.CheckedBatch)."""
    use_checkpoint_file_manager(spark, config.checkpoint_dir)
    since = earliest_batch_time_s(handler.offsets, time.time())
    rows = parse(read_kafka(spark, config), config.price_max, config.max_future_s, batch_times_from=since).select(*STREAM_COLUMNS)
    writer = (
        rows.writeStream.queryName(QUERY_NAME).option("checkpointLocation", query_checkpoint(config.checkpoint_dir)).foreachBatch(handler)
    )
    return [_with_trigger(writer, config).start()]


def window_sinks(config: AggregatorConfig, publisher: KafkaPublisher | None) -> list:
    sinks = []
    if config.console:
        sinks.append(ConsoleSink(config.session_timezone))
    if config.output_dir:
        sinks.append(JsonLinesSink(config.output_dir))
    if config.results_db:
        sinks.append(SqliteResultsSink(config.results_db))
    if config.results_topic and publisher:
        sinks.append(KafkaResultsSink(publisher, config.results_topic))
    return sinks


# What the fold keeps of a batch's rejected messages for the dead-letter topic, in bytes
# (their values, reasons and coordinates), shared evenly by the batch's tasks: the driver
# receives them all. A batch with more is folded all the same, and its dead letters are read
# from the batch again (from Kafka).
DEAD_LETTER_BUDGET_BYTES = 16 << 20


def fold_batch(
    batch: DataFrame, state: WindowState, batch_id: int, append: bool, budget_bytes: int = DEAD_LETTER_BUDGET_BYTES
) -> tuple[BatchOutcome, DataFrame | None]:
    """One pass over the batch (`transform.batch_rows`' columns): its partial sums per window,
    folded into the open windows, and its rejected messages, for the dead-letter topic (None
    when there are none). The job's fold (jvm/.../BatchFold.java) makes both in one pass and
    keeps the rejected messages in memory up to `budget_bytes` for the batch; past that, or
    without the fold's jar, the rejected messages are the batch read again."""
    spark = batch.sparkSession
    fold = spark._jvm.purchase_analytics.BatchFold
    if not isinstance(fold, JavaClass):  # not on Spark's classpath (spark_session.register_wire_parser says so)
        return _fold_in_sql(batch, state, batch_id, append)
    folded = fold.fold(batch._jdf, state.window_us, budget_bytes)
    partials = [Partial(*p) for p in struct.iter_unpack("<4q", folded.partials())]
    rejected = folded.rejected()
    outcome = state.apply(batch_id, partials, folded.messages(), rejected, append)
    if not rejected:
        return outcome, None
    return outcome, DataFrame(folded.deadLetters(), spark) if folded.complete() else rejected_messages(batch)


def _fold_in_sql(batch: DataFrame, state: WindowState, batch_id: int, append: bool) -> tuple[BatchOutcome, DataFrame | None]:
    """fold_batch without the job's jar: Spark SQL's grouping, and the batch read again for
    its rejected messages."""
    partials, messages, rejected = [], 0, 0
    for r in window_partials(batch, state.window_us).collect():
        messages += r.orders
        if r.window_start_us is None:
            rejected = r.orders
        else:
            partials.append(Partial(r.window_start_us, int(r.total_purchase), r.orders, r.max_event_us))
    return state.apply(batch_id, partials, messages, rejected, append), rejected_messages(batch) if rejected else None


class BatchHandler:
    """The foreachBatch function of the job's query. A micro-batch arrives parsed and
    checked but for the rule on the batch's time (read from Spark's offset log, so a batch
    that runs again gets the same time), and is read once (`fold_batch`): the valid events'
    partial sums are folded into the open windows (window_state), and its rejected messages,
    if any, go to the dead-letter topic. Then the sinks get the windows the batch changed (or
    closed, in append mode), and the state is saved in the checkpoint. All of it happens
    before Spark commits the batch, so a batch that runs again after a crash writes the same
    dead letters (keyed by their source coordinates) and the same windows, which every sink
    takes as a no-op rewrite."""

    def __init__(self, spark: SparkSession, config: AggregatorConfig, sinks: list):
        self.config = config
        self.sinks = sinks
        state_dir = f"{query_checkpoint(config.checkpoint_dir)}/{STATE_DIR}"
        window_us, delay_us = (round(interval_seconds(t) * US) for t in (config.window_duration, config.watermark_delay))
        self.log = StateLog(checkpoint_files(spark, state_dir), window_us, delay_us, config.checkpoint_dir)
        self.log.load_before(sys.maxsize)  # a checkpoint made with another --window is refused here, before any batch
        self.offsets = checkpoint_files(spark, f"{query_checkpoint(config.checkpoint_dir)}/{OFFSETS_DIR}")  # batch times
        self.checked = CheckedBatch(config.max_future_s)
        self.dead_letter_records = DeadLetterRecords(config.dlq_max_value_bytes)
        self.outcomes: dict[int, BatchOutcome] = {}  # batch id -> what it did, for the progress reporter
        self._lock = threading.Lock()

    def __call__(self, scanned: DataFrame, batch_id: int) -> None:
        state = self.log.load_before(batch_id)
        batch = self.checked(scanned, planned_batch(self.offsets, batch_id).time_s)
        budget = DEAD_LETTER_BUDGET_BYTES if self.config.dlq_topic else 0  # without the topic, nothing is kept
        outcome, dead_letters = fold_batch(batch, state, batch_id, self.config.output_mode == "append", budget)
        if dead_letters is not None and self.config.dlq_topic:
            self._write_dead_letters(dead_letters)
        for sink in self.sinks:
            sink.write(batch_id, outcome.windows)
        self.log.save(batch_id, state)
        with self._lock:
            self.outcomes[batch_id] = outcome

    def _write_dead_letters(self, rejected: DataFrame) -> None:
        (
            self.dead_letter_records(rejected)
            .write.format("kafka")
            .option("kafka.bootstrap.servers", self.config.bootstrap_servers)
            .options(**self.config.security.spark_options())
            .option("topic", self.config.dlq_topic)
            .option("kafka.acks", "all")
            .save()
        )

    def outcome(self, batch_id: int) -> BatchOutcome | None:
        with self._lock:
            return self.outcomes.pop(batch_id, None)


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


class JobSignals:
    def __init__(self):
        self.stop = threading.Event()
        self.drain = threading.Event()
        self.installed = False

    def install(self) -> JobSignals:
        set_on_signal(self.stop, signal.SIGINT, signal.SIGTERM)
        set_on_signal(self.drain, signal.SIGUSR1)
        self.installed = True
        return self


class ProgressReporter:
    """Folds each new batch of the job's query into the summary, prints its line and
    publishes it to the metrics topic."""

    def __init__(self, handler: BatchHandler, config: AggregatorConfig, summary: JobSummary, publisher: KafkaPublisher | None, out):
        self.handler, self.config, self.summary, self.publisher, self.out = handler, config, summary, publisher, out
        self.batches_since_restart = 0

    def report(self, query) -> None:
        for raw in self._new_reports(query):
            progress = BatchProgress.from_spark(json.loads(raw.json), self.handler.outcome(raw.batchId))
            if self.summary.record(progress):
                self.batches_since_restart += 1
                print(progress.line(), file=self.out, flush=True)
            record = progress.to_record(self.config.topic)
            if self.publisher and self.config.metrics_topic:
                self.publisher.send(self.config.metrics_topic, record)
            if self.config.progress_file:
                with open(self.config.progress_file, "a") as f:
                    f.write(json.dumps(record) + "\n")
        if self.publisher:
            self.publisher.flush()

    def _new_reports(self, query) -> list:
        """The query's progress reports not folded in yet, oldest first. Between two polls
        there is usually one new batch, or none: the last report tells. Only after a gap (or
        a restart) are the recent ones read, which are up to a hundred reports, each a few
        py4j calls and a JSON document: read every poll, they cost the driver about a tenth
        of a core and slowed every batch."""
        last = query.lastProgress
        if last is None or not self.summary.is_new(str(last.runId), last.batchId):
            return []
        if self.summary.is_next(str(last.runId), last.batchId):
            return [last]
        return [raw for raw in query.recentProgress if self.summary.is_new(str(raw.runId), raw.batchId)]


class JobFailed(RuntimeError):
    """A failure that a restart cannot heal: the message names the cause and the fix."""


def run_job(
    config: AggregatorConfig,
    signals: JobSignals | None = None,
    out=sys.stderr,
    *,
    spark: SparkSession | None = None,
    spark_config: SparkConfig | None = None,
) -> JobSummary:
    """Run the queries until they finish (--available-now), a signal, the timeout or a
    failure that a restart cannot heal. Runs on `spark` when given (and leaves it running),
    else on a session created from `spark_config` and stopped at the end."""
    signals = signals or JobSignals()
    own_session = spark is None
    if own_session:
        if spark_config is None:
            raise ValueError("run_job needs a SparkSession or a SparkConfig")
        spark = create_spark_session("PurchaseAggregator", config.master, config.shuffle_partitions, config.session_timezone, spark_config)
        if signals.installed:
            signals.install()  # the new SparkContext took SIGINT for itself (a traceback on Ctrl-C)
    summary = JobSummary()
    publisher = KafkaPublisher(config.bootstrap_servers, config.security) if (config.results_topic or config.metrics_topic) else None
    handler = BatchHandler(spark, config, window_sinks(config, publisher))
    reporter = ProgressReporter(handler, config, summary, publisher, out)
    deadline = time.monotonic() + config.timeout_s if config.timeout_s else None
    restarts_in_row = 0
    queries = []
    try:
        queries = start_queries(spark, config, handler)
        while True:
            try:
                queries[0].awaitTermination(0.5)
            except StreamingQueryException:
                pass  # handled below, with the other queries
            reporter.report(queries[0])
            failed = next((q.exception() for q in queries if not q.isActive and q.exception() is not None), None)
            if failed is not None:
                if reporter.batches_since_restart:
                    restarts_in_row = 0  # the last restart healed: its budget is given back
                restarts_in_row += 1
                _stop_all(queries)
                _before_restart(config, failed, restarts_in_row, summary, signals, out)
                reporter.batches_since_restart = 0
                queries = start_queries(spark, config, handler)
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
        _stop_all(queries)
        if queries:
            reporter.report(queries[0])
        if publisher:
            publisher.close()
        print(summary.line(), file=out, flush=True)
        if own_session:
            spark.stop()
    return summary


def _stop_all(queries) -> None:
    for q in queries:
        try:
            q.stop()
        except Exception:  # a query that failed may refuse to stop again; it is stopped
            pass


def _before_restart(config: AggregatorConfig, error, attempt: int, summary: JobSummary, signals: JobSignals, out) -> None:
    """Decide whether a failed query may be restarted from its checkpoint: only failures a
    restart can heal (the broker away, a leader moving, the topic missing) are retried,
    with backoff; nothing is lost or counted twice. Any other failure ends the job at once."""
    fatal = classify_failure(error, config)
    if fatal:
        raise JobFailed(fatal)
    if attempt > MAX_RESTARTS:
        raise JobFailed(f"the query failed {attempt} times in a row; last error: {first_line(error)}")
    summary.restarts += 1
    print(f"query failed ({first_line(error)}); restarting from the checkpoint ({attempt}/{MAX_RESTARTS})", file=out, flush=True)
    delay = min(2**attempt, 30)
    if signals.stop.wait(delay):
        raise JobFailed("stopped by a signal while waiting to restart")
    wait_for_topic(config.bootstrap_servers, config.topic, config.security, signals, out=out)


class BrokerUnreachable(RuntimeError):
    pass


def _admin(bootstrap_servers: str, timeout_s: float, security: KafkaSecurity, topic: str | None = None):
    """An admin client, or one line naming why there is none: no broker, or the broker
    refused this client (login, TLS)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    with ClientErrorLog() as log:
        try:
            return KafkaAdminClient(
                bootstrap_servers=bootstrap_servers.split(","),
                bootstrap_timeout_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000),
                **security.kafka_python_kwargs(),
            )
        except KafkaError as exc:
            cause = explain_failure(exc, security, bootstrap_servers, topic, "read", log) or diagnose_connection(
                security, bootstrap_servers
            )
            raise BrokerUnreachable(
                cause or f"cannot reach a Kafka broker at {bootstrap_servers} ({exc}); is it running? try `make kafka`"
            ) from None


def check_broker(bootstrap_servers: str, topic: str, security: KafkaSecurity, timeout_s: float = 10.0) -> None:
    """Fail fast with one line when no broker answers, or it refuses this client (login,
    TLS, ACL): Spark's own client would retry for minutes. A missing topic is not an error
    here: `wait_for_topic` waits for it."""
    from kafka.errors import KafkaError

    admin = _admin(bootstrap_servers, timeout_s, security, topic)
    try:
        topics = admin.describe_topics([topic])
    except KafkaError as exc:
        topics = [{"error_code": getattr(exc, "errno", -1), "error": exc}]
    finally:
        admin.close()
    if topics and topics[0].get("error_code", 0) == 29:  # TOPIC_AUTHORIZATION_FAILED
        raise BrokerUnreachable(explain_failure("TopicAuthorizationFailedError", security, bootstrap_servers, topic, "read"))


def wait_for_topic(
    bootstrap_servers: str,
    topic: str,
    security: KafkaSecurity,
    signals: JobSignals | None = None,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    out=sys.stderr,
) -> None:
    """Return once `topic` exists. A missing topic is waited for, with one line saying so:
    Spark's own source would fail the query at every try."""
    admin = _admin(bootstrap_servers, 15.0, security, topic)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        warned = False
        while topic not in admin.list_topics():
            if not warned:
                print(
                    f"waiting for topic '{topic}' to exist at {bootstrap_servers} (create it, e.g. with `make kafka`)", file=out, flush=True
                )
                warned = True
            if deadline and time.monotonic() > deadline:
                raise BrokerUnreachable(f"topic '{topic}' did not appear at {bootstrap_servers} within {timeout_s:g}s")
            if signals and signals.stop.wait(poll_s):
                raise JobFailed("stopped by a signal while waiting for the topic")
            if not signals:
                time.sleep(poll_s)
        if warned:
            print(f"topic '{topic}' exists now; starting", file=out, flush=True)
    finally:
        admin.close()


def source_identity(config: AggregatorConfig) -> dict[str, str]:
    """The cluster id and the topic id of the job's source topic (empty when unknown)."""
    admin = _admin(config.bootstrap_servers, 15.0, config.security, config.topic)
    try:
        cluster_id = admin.describe_cluster().get("cluster_id") or ""
        described = admin.describe_topics([config.topic])
        topic_id = str(described[0].get("topic_id") or "") if described else ""
    finally:
        admin.close()
    if topic_id.strip("0-"):  # an all-zero uuid is "no id"
        return {"topic": config.topic, "cluster_id": cluster_id, "topic_id": topic_id}
    return {"topic": config.topic, "cluster_id": cluster_id, "topic_id": ""}


def ensure_output_topics(config: AggregatorConfig) -> None:
    """The job's own output topics exist before its first write: the results topic
    compacted (the latest total per window is what it keeps), and replicated like the
    cluster allows (up to 3), so losing a broker does not stall the job's writes."""
    from .runtime.kafka_broker import create_topics

    topics = {name: 1 for name in (config.dlq_topic, config.results_topic, config.metrics_topic) if name}
    if not topics:
        return
    admin = _admin(config.bootstrap_servers, 15.0, config.security)
    try:
        replication = min(3, len(admin.describe_cluster()["brokers"]))
    finally:
        admin.close()
    configs = {config.results_topic: {"cleanup.policy": "compact"}} if config.results_topic else {}
    create_topics(config.bootstrap_servers, topics, replication, config.security, configs)


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    config = parse_aggregator_config(argv, settings)  # exits with one line per bad setting, before any JVM starts
    signals = JobSignals().install()
    try:
        with CheckpointLock(config.checkpoint_dir):
            check_broker(config.bootstrap_servers, config.topic, config.security)
            wait_for_topic(config.bootstrap_servers, config.topic, config.security, signals, config.timeout_s)
            verify_source(config.checkpoint_dir, source_identity(config))
            ensure_output_topics(config)
            print(
                f"aggregating topic '{config.topic}' at {config.bootstrap_servers} on {config.master}: "
                f"{config.window_duration} windows, watermark {config.watermark_delay}, {config.output_mode} mode, "
                f"{'available-now' if config.available_now else 'trigger ' + config.trigger_interval}, checkpoint {config.checkpoint_dir}",
                file=sys.stderr,
                flush=True,
            )
            run_job(config, signals, spark_config=SparkConfig.from_settings(settings))
    except (BrokerUnreachable, CheckpointError, JobFailed) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2 if isinstance(exc, (BrokerUnreachable, CheckpointError)) else 1
    except Exception as exc:  # one clear line instead of a JVM stack trace
        print(f"error: {first_line(exc)}", file=sys.stderr, flush=True)
        return 1
    return 0
