"""The streaming job: two queries on the job's topic, each with its own checkpoint under
--checkpoint, supervised together until done, stopped or told to drain.

- The windows query parses and checks each message (transform.parse_events) and sums the
  valid events with Spark's own event-time aggregation (transform.aggregate_windows:
  watermark, windows, Spark's state store). The rows Spark emits reach the sinks in
  foreachBatch (WindowsHandler).
- The dead-letter query parses the same messages and writes the rejected ones, with their
  reason and source coordinates, through Spark's Kafka sink.

Why two queries: the aggregated stream carries only the windows, so the rejected messages
need a stream of their own; each query keeps its own offsets, so either restarts from its
checkpoint without the other, and neither stops for a bad message.

Signals: SIGINT/SIGTERM stop at once (the checkpoints stay consistent); SIGUSR1 drains:
process everything available now, then stop (`make run EVENTS=N` uses it).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from .admin import BrokerUnreachable, check_broker, ensure_output_topics, source_identity, wait_for_topic
from .checkpoint import (
    DEAD_LETTERS_DIR,
    WINDOWS_DIR,
    CheckpointError,
    CheckpointLock,
    checkpoint_files,
    local_path,
    query_checkpoint,
    read_query_id,
    use_checkpoint_file_manager,
    verify_checkpoint,
)
from .config import AggregatorConfig, interval_seconds, load_settings, parse_aggregator_config
from .failures import MAX_RESTARTS, JobFailed, OutputRefused, OutputRetriable, backoff_s, classify_failure, first_line
from .progress import BATCH_METRICS, BatchProgress, metrics_key
from .signals import JobSignals
from .sinks import ConsoleSink, JsonLinesSink, KafkaPublisher, KafkaResultsSink, SqliteResultsSink
from .spark_session import SparkConfig, create_spark_session, submitted_master
from .transform import aggregate_windows, dead_letter_records, parse_events, rejected_messages, valid_events

WINDOWS_QUERY = "purchase-windows"
DEAD_LETTERS_QUERY = "purchase-dead-letters"
STATE_STORE_PROVIDERS = {
    "hdfs": "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider",
    "rocksdb": "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
}


def read_kafka(spark: SparkSession, config: AggregatorConfig) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.bootstrap_servers)
        .options(**config.security.spark_options())
        .option("subscribe", config.topic)
        .option("startingOffsets", config.starting_offsets)
        # Kafka's default of 500 records a poll means 2,000 polls per partition for a
        # 1M-event batch, each through the consumer's fetch and network bookkeeping
        .option("kafka.max.poll.records", config.max_poll_records)
    )
    if config.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", config.max_offsets_per_trigger)
    return reader.load()


def _with_trigger(writer, config: AggregatorConfig):
    if config.available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=config.trigger_interval)


def checkpoint_shape(config: AggregatorConfig) -> dict:
    """What the windows query's state depends on besides Spark's own checks (checkpoint.verify_checkpoint)."""
    return {
        "window": config.window_duration,
        "slide": config.slide_duration,
        "group_by": list(config.group_by),
        "state_store": config.state_store,  # Spark keeps a checkpoint's provider whatever the session says
    }


def _verify_checkpoint(files, config: AggregatorConfig) -> None:
    verify_checkpoint(files, config.checkpoint_dir, source_identity(config), checkpoint_shape(config))


def start_queries(spark: SparkSession, config: AggregatorConfig, handler: WindowsHandler, parse=parse_events) -> list:
    """Start the job's queries (the windows query first). `parse` is the benchmark's seam
    for its from_json-only reference."""
    use_checkpoint_file_manager(spark, config.checkpoint_dir)
    spark.conf.set("spark.sql.streaming.stateStore.providerClass", STATE_STORE_PROVIDERS[config.state_store])
    parsed = parse(read_kafka(spark, config), config.price_max, config.max_future_s)
    counted = parsed.observe(
        BATCH_METRICS, F.count(F.lit(1)).alias("messages"), F.count_if(F.col("rejection_reason").isNotNull()).alias("rejected")
    )
    windows = aggregate_windows(
        valid_events(counted), config.window_duration, config.watermark_delay, config.slide_duration, config.group_by
    )
    handler.start()
    windows_writer = (
        windows.writeStream.queryName(WINDOWS_QUERY)
        .outputMode(config.output_mode)
        .option("checkpointLocation", query_checkpoint(config.checkpoint_dir, WINDOWS_DIR))
        .foreachBatch(handler)
    )
    queries = [_with_trigger(windows_writer, config).start()]
    if config.dlq_topic:
        rejected = rejected_messages(parse(read_kafka(spark, config), config.price_max, config.max_future_s))
        dead_letters_writer = (
            dead_letter_records(rejected, config.dlq_max_value_bytes)
            .writeStream.queryName(DEAD_LETTERS_QUERY)
            .format("kafka")
            .option("kafka.bootstrap.servers", config.bootstrap_servers)
            .options(**config.security.spark_options())
            .option("topic", config.dlq_topic)
            .option("kafka.acks", "all")
            .option("checkpointLocation", query_checkpoint(config.checkpoint_dir, DEAD_LETTERS_DIR))
        )
        queries.append(_with_trigger(dead_letters_writer, config).start())
    return queries


def window_sinks(config: AggregatorConfig, publisher: KafkaPublisher | None) -> list:
    sinks = []
    if config.console:
        sinks.append(ConsoleSink(config.session_timezone, config.group_by))
    if config.output_dir:
        sinks.append(JsonLinesSink(config.output_dir, config.group_by))
    if config.results_db:
        sinks.append(SqliteResultsSink(config.results_db, config.group_by))
    if config.results_topic and publisher:
        sinks.append(KafkaResultsSink(publisher, config.results_topic, config.group_by))
    return sinks


def window_key(row: Row, group_by: tuple[str, ...]) -> tuple:
    """A window row's identity: its start and end (epoch seconds), and its group's values."""
    return (row["window_start"].timestamp(), row["window_end"].timestamp(), *(row[g] for g in group_by))


class WindowsHandler:
    """The foreachBatch function of the windows query: the rows Spark's aggregation emitted
    for a micro-batch (update mode: every window the batch changed, with its total so far;
    append mode: each window once, when the watermark has passed its end), in window order,
    to every sink, with the query's stable id (the run's: see sinks). All of it happens
    before Spark commits the batch, so a batch that runs again after a crash hands the sinks
    the same rows, which each takes as a no-op rewrite."""

    def __init__(self, spark: SparkSession, config: AggregatorConfig, sinks: list):
        self.spark, self.sinks, self.group_by = spark, sinks, config.group_by
        self.checkpoint = query_checkpoint(config.checkpoint_dir, WINDOWS_DIR)
        self.late = LateEvents(spark, config)
        self.query_id: str | None = None

    def start(self) -> None:
        """Before the query (re)starts."""
        self.query_id = None
        self.late.start()

    def __call__(self, windows: DataFrame, batch_id: int) -> None:
        if self.query_id is None:  # Spark wrote it when the query started, before its first batch
            self.query_id = read_query_id(checkpoint_files(self.spark, self.checkpoint))
        rows = sorted(windows.collect(), key=lambda r: window_key(r, self.group_by))
        for sink in self.sinks:
            sink.write(batch_id, rows, self.query_id)
        self.late.emitted(batch_id, rows)


class LateEvents:
    """How many valid events Spark's aggregation dropped as late in each micro-batch.

    Spark judges a row late when its window ended at or before the watermark of the batch
    before (and reports numRowsDroppedByWatermark, which counts window rows after its
    aggregation: a batch's late events of one window are one row). So the job counts
    events from what the aggregation kept: a batch's valid events less the events it added
    to windows, read from the window counts. In update mode a batch emits every window it
    changed with its new count: the added events are those counts less the ones before. In
    append mode a window is emitted once, closed, so the counts are read from Spark's state
    store after each batch with input, through Spark's state data source. A (re)started
    query starts from the counts in the state store of the batch before its first.

    With sliding windows an event is in several windows and the counts add up window rows:
    ProgressReporter divides the dropped ones by the windows per event (docs/data-rules.md)."""

    def __init__(self, spark: SparkSession, config: AggregatorConfig):
        self.spark, self.group_by = spark, config.group_by
        self.append = config.output_mode == "append"
        self.checkpoint = query_checkpoint(config.checkpoint_dir, WINDOWS_DIR)
        self.counts: dict[tuple, int] | None = None  # window key -> its events, after the last batch counted
        self._emitted: dict[int, dict[tuple, int]] = {}  # batch id -> the counts it emitted
        self._lock = threading.Lock()

    def start(self) -> None:
        """Before the query (re)starts: its first batch starts from the counts of the batch
        before it, read then (by then Spark has read the checkpoint: a damaged one fails
        the query with Spark's own error, which the job explains)."""
        with self._lock:
            self._emitted.clear()
        self.counts = None

    def emitted(self, batch_id: int, rows: list[Row]) -> None:
        with self._lock:
            self._emitted[batch_id] = {window_key(r, self.group_by): int(r["orders"]) for r in rows}

    def added(self, batch_id: int, had_input: bool, watermark_s: float | None) -> int:
        """Events batch `batch_id` added to windows (Spark reported it; call in batch order)."""
        with self._lock:
            emitted = self._emitted.pop(batch_id, {})
        if self.counts is None:
            self.counts = self._state_counts(batch_id - 1) if batch_id > 0 else {}
        if not self.append:
            current = {**self.counts, **emitted}
        elif had_input:
            current = self._state_counts(batch_id)
        else:  # no input adds nothing: the windows it emitted have closed
            current = {k: v for k, v in self.counts.items() if k not in emitted}
        closed = {k: emitted.get(k, self.counts.get(k, 0)) for k in (self.counts.keys() | emitted.keys()) - current.keys()}
        added = sum(current.values()) + sum(closed.values()) - sum(self.counts.values())
        if watermark_s is not None:  # windows the watermark has passed left Spark's state
            current = {k: v for k, v in current.items() if k[1] > watermark_s}
        self.counts = current
        return added

    def _state_counts(self, batch_id: int) -> dict[tuple, int]:
        reader = self.spark.read.format("statestore").option("batchId", batch_id)
        try:
            state = reader.load(self.checkpoint)
            rows = state.select(
                F.col("key.window.start").alias("window_start"),
                F.col("key.window.end").alias("window_end"),
                *[F.col(f"key.{g}").alias(g) for g in self.group_by],
                F.col("value.count").alias("orders"),
            ).collect()
        except Exception as exc:  # a query that has committed no batch has no state yet
            if "STDS_" in str(exc) or "PATH_NOT_FOUND" in str(exc):
                return {}
            raise
        return {window_key(r, self.group_by): int(r["orders"]) for r in rows}


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


METRICS_WRITTEN = "metrics-written.json"  # in the job's checkpoint: the last batch whose metrics record was written


class ProgressReporter:
    """Folds each new batch of the windows query into the summary, with its late events
    (LateEvents), prints its line and writes its record to the metrics topic and the
    progress file.

    The records are at least once. Spark commits a batch before the job reads its progress
    report, so a job killed in between would lose that batch's record; the job therefore
    notes in its checkpoint (METRICS_WRITTEN) the last batch whose record was written, and
    when it starts, before the queries do, writes the records of the committed batches
    after it (recovered_records: their input is known exactly from the checkpoint's offset
    log). A record written twice has the same key (metrics_key), so a reader keeps one."""

    def __init__(self, handler: WindowsHandler, config: AggregatorConfig, summary: JobSummary, publisher: KafkaPublisher | None, out):
        self.handler, self.config, self.summary, self.publisher, self.out = handler, config, summary, publisher, out
        self.batches_since_restart = 0
        self.windows_per_event = windows_per_event(config)
        self._writes_records = bool(config.progress_file or (publisher and config.metrics_topic))
        if self._writes_records:
            self._write_missing_records()

    def _write_missing_records(self) -> None:
        spark, checkpoint = self.handler.spark, self.config.checkpoint_dir
        files = checkpoint_files(spark, checkpoint)
        committed = committed_batches(spark, checkpoint)
        if METRICS_WRITTEN not in files.names():
            # a new checkpoint (nothing committed), or one of a version that did not note its records
            files.write(METRICS_WRITTEN, json.dumps({"batch_id": committed[-1] if committed else -1}) + "\n")
            return
        written = int(json.loads(files.read(METRICS_WRITTEN))["batch_id"])
        missing = [b for b in committed if b > written]
        if missing:
            print(f"writing the metrics records of batches {missing[0]}-{missing[-1]}, committed before the job stopped", file=self.out)
            self._write_records(recovered_records(spark, self.config, missing))

    def _write_records(self, records: list[dict]) -> None:
        if self.config.progress_file:
            with open(self.config.progress_file, "a") as f:
                f.writelines(json.dumps(record) + "\n" for record in records)
        if records and self.publisher and self.config.metrics_topic:
            self._publish(records)
        # Spark's report of a trigger that ran nothing carries the next batch id, not committed
        # yet: the note names the last committed batch written, so the real one is not passed over
        committed = committed_batches(self.handler.spark, self.config.checkpoint_dir) if records else []
        done = [r for r in records if committed and r["batch_id"] <= committed[-1]]
        if done:
            last = max(done, key=lambda r: r["batch_id"])
            files = checkpoint_files(self.handler.spark, self.config.checkpoint_dir)
            files.write(METRICS_WRITTEN, json.dumps({"batch_id": last["batch_id"], "query_id": last["query_id"]}) + "\n")

    def report(self, query) -> None:
        records = []
        for raw in self._new_reports(query):
            progress = BatchProgress.from_spark(json.loads(raw.json))
            added = self.handler.late.added(progress.batch_id, progress.input_rows > 0, _epoch_s(progress.watermark))
            dropped_rows = progress.valid * self.windows_per_event - added
            progress = replace(progress, dropped_late=dropped_rows // self.windows_per_event)
            if self.summary.record(progress):
                self.batches_since_restart += 1
                print(progress.line(), file=self.out, flush=True)
            records.append(progress.to_record(self.config.topic))
        if self._writes_records:
            self._write_records(records)

    def _publish(self, records: list[dict]) -> None:
        """The batches' records to the metrics topic: written, or sent again after a failure
        a retry can heal (with backoff, as a query restart), else the job ends with its line."""
        for attempt in range(1, MAX_RESTARTS + 2):
            try:
                for record in records:
                    self.publisher.send(self.config.metrics_topic, record, key=metrics_key(record))
                self.publisher.flush()
                return
            except OutputRefused as exc:
                raise JobFailed(str(exc)) from None
            except OutputRetriable as exc:
                if attempt > MAX_RESTARTS:
                    raise JobFailed(f"the metrics could not be written {attempt} times in a row; last error: {exc}") from None
                print(f"metrics not written ({exc}); sending them again ({attempt}/{MAX_RESTARTS})", file=self.out, flush=True)
                time.sleep(backoff_s(attempt))

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


def committed_batches(spark: SparkSession, checkpoint_dir: str) -> list[int]:
    """The windows query's committed batch ids, oldest first (Spark keeps the last hundred or so)."""
    commits = checkpoint_files(spark, f"{query_checkpoint(checkpoint_dir, WINDOWS_DIR)}/commits")
    return sorted(int(name) for name in commits.names() if name.isdigit())


def _offset_log(files, name: str) -> tuple[dict, dict[str, int]]:
    """An entry of Spark's offset log (`offsets/N`: a version line, the batch's metadata,
    then one line per source) or the Kafka source's initial offsets (`sources/0/0`, after a
    NUL byte): (metadata, {partition: offset}) of the job's one source."""
    lines = files.read(name).lstrip("\x00").splitlines()
    source = json.loads(lines[-1])
    return (json.loads(lines[1]) if len(lines) > 2 else {}), {p: int(o) for parts in source.values() for p, o in parts.items()}


def _iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def recovered_records(spark: SparkSession, config: AggregatorConfig, batch_ids: list[int]) -> list[dict]:
    """The metrics records of committed batches, computed again from the checkpoint: each
    batch's input is the offsets between its offset-log entry and the one before (the
    source's initial offsets for batch 0), read again from the topic; its watermark and time
    are in its entry. `messages`, `rejected` and `valid` are the batch's; `dropped_late`
    counts the valid events whose windows had ended at or before the watermark of the batch
    before (Spark's rule; with sliding windows, the late window rows over the windows per
    event). Spark's timings, rates and state rows are not kept: those are 0, and the record
    says `"recovered": true`."""
    query = checkpoint_files(spark, query_checkpoint(config.checkpoint_dir, WINDOWS_DIR))
    query_id = read_query_id(query)
    records = []
    for batch_id in batch_ids:
        meta, end = _offset_log(query, f"offsets/{batch_id}")
        before, start = _offset_log(query, f"offsets/{batch_id - 1}") if batch_id > 0 else ({}, _offset_log(query, "sources/0/0")[1])
        start = {p: start.get(p, 0) for p in end}  # a partition added since starts at its beginning
        raw = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", config.bootstrap_servers)
            .options(**config.security.spark_options())
            .option("subscribe", config.topic)
            .option("startingOffsets", json.dumps({config.topic: start}))
            .option("endingOffsets", json.dumps({config.topic: end}))
            .load()
        )
        batch_ms, watermark_ms = int(meta.get("batchTimestampMs", 0)), int(meta.get("batchWatermarkMs", 0))
        late_ms = int(before.get("batchWatermarkMs", 0))  # Spark judges late rows by the watermark of the batch before
        # the future-time rule as the batch judged it: against its own time, not now
        parsed = parse_events(raw, config.price_max, config.max_future_s - int(time.time() - batch_ms / 1000)).cache()
        try:
            counts = parsed.select(F.count(F.lit(1)), F.count_if(F.col("rejection_reason").isNotNull())).first()
            late_rows = (
                valid_events(parsed)
                .select(F.window("event_time", config.window_duration, config.slide_duration).alias("w"))
                .where(F.col("w.end") <= F.timestamp_millis(F.lit(late_ms)))
                .count()
            )
        finally:
            parsed.unpersist()
        progress = BatchProgress(
            run_id="",
            batch_id=batch_id,
            timestamp=_iso_ms(batch_ms),
            input_rows=int(counts[0]),
            input_rows_per_s=0.0,
            processed_rows_per_s=0.0,
            batch_duration_ms=0,
            messages=int(counts[0]),
            rejected=int(counts[1]),
            dropped_late=late_rows // windows_per_event(config),
            state_rows=0,
            watermark=_iso_ms(watermark_ms) if watermark_ms else None,
            end_offsets={config.topic: end},
            query_id=query_id,
        )
        records.append({**progress.to_record(config.topic), "recovered": True})
    return records


def windows_per_event(config: AggregatorConfig) -> int:
    """How many windows each event is in: one when tumbling, window / slide when sliding
    (a window a whole number of slides long; otherwise it varies, and the late count is
    rounded down)."""
    if not config.slide_duration:
        return 1
    return max(1, int(interval_seconds(config.window_duration) // interval_seconds(config.slide_duration)))


def _epoch_s(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


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
    if local_path(config.checkpoint_dir) is None:  # a local one was checked before Spark started (main)
        print(
            f"note: checkpoint {config.checkpoint_dir} is remote: it is checked through Hadoop's file system, but not locked; "
            f"run one job on it at a time",
            file=out,
            flush=True,
        )
        _verify_checkpoint(checkpoint_files(spark, config.checkpoint_dir), config)
    publisher = KafkaPublisher.for_job(config) if (config.results_topic or config.metrics_topic) else None
    handler = WindowsHandler(spark, config, window_sinks(config, publisher))
    deadline = time.monotonic() + config.timeout_s if config.timeout_s else None
    restarts_in_row = 0
    queries = []
    try:
        reporter = ProgressReporter(handler, config, summary, publisher, out)  # writes the records a stop left out first
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
                reporter.report(queries[0])
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
            try:
                reporter.report(queries[0])
            except JobFailed as exc:  # the metrics of the last batches: said, then the job ends as it was ending
                print(f"error: {exc}", file=out, flush=True)
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
    delay = backoff_s(attempt)
    if signals.stop.wait(delay):
        raise JobFailed("stopped by a signal while waiting to restart")
    wait_for_topic(config.bootstrap_servers, config.topic, config.security, signals, out=out)


def _under_spark_submit(config: AggregatorConfig, argv: list[str]) -> AggregatorConfig:
    """Under spark-submit the job runs on spark-submit's master: the job's --master (and
    SPARK_MASTER_URL) is not used, and a --master on the job's command line that names
    another master gets one line saying so."""
    master = submitted_master()
    if master is None:
        return config
    if master != config.master and any(arg == "--master" or arg.startswith("--master=") for arg in argv):
        print(f"note: spark-submit's --master {master} rules; the job's --master {config.master} is not used", file=sys.stderr, flush=True)
    return replace(config, master=master)


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    config = parse_aggregator_config(argv, settings)  # exits with one line per bad setting, before any JVM starts
    config = _under_spark_submit(config, sys.argv[1:] if argv is None else argv)
    signals = JobSignals().install()
    try:
        with CheckpointLock(config.checkpoint_dir):
            check_broker(config.bootstrap_servers, config.topic, config.security)
            wait_for_topic(config.bootstrap_servers, config.topic, config.security, signals, config.timeout_s)
            path = local_path(config.checkpoint_dir)
            if path is not None:  # a remote one is checked once Spark's file systems are there (run_job)
                _verify_checkpoint(checkpoint_files(None, str(path)), config)
            ensure_output_topics(config)
            print(
                f"aggregating topic '{config.topic}' at {config.bootstrap_servers} on {config.master}: "
                f"{config.window_duration} windows{' every ' + config.slide_duration if config.slide_duration else ''}"
                f"{' by ' + ','.join(config.group_by) if config.group_by else ''}, watermark {config.watermark_delay}, "
                f"{config.output_mode} mode, "
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
