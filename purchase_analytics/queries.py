"""The job's two queries on its topic, each with its own checkpoint under --checkpoint.

- The windows query parses and checks each message (transform.parse_events) and sums the
  valid events with Spark's own event-time aggregation (transform.aggregate_windows:
  watermark, windows, Spark's state store). The rows Spark emits reach the sinks in
  foreachBatch (WindowsHandler).
- The dead-letter query parses the same messages and writes the rejected ones, with their
  reason and source coordinates, through Spark's Kafka sink.

Why two queries: the aggregated stream carries only the windows, so the rejected messages
need a stream of their own; each query keeps its own offsets, so either restarts from its
checkpoint without the other, and neither stops for a bad message.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .admin import source_identity
from .checkpoint import (
    DEAD_LETTERS_DIR,
    WINDOWS_DIR,
    checkpoint_files,
    query_checkpoint,
    read_query_id,
    use_checkpoint_file_manager,
    verify_checkpoint,
)
from .config import AggregatorConfig
from .late_events import LateEvents
from .progress import BATCH_METRICS
from .records import window_key
from .sinks import ConsoleSink, JsonLinesSink, KafkaPublisher, KafkaResultsSink, SqliteResultsSink
from .transform import aggregate_windows, dead_letter_records, parse_events, rejected_messages, valid_events

WINDOWS_QUERY = "purchase-windows"
DEAD_LETTERS_QUERY = "purchase-dead-letters"
STATE_STORE_PROVIDERS = {
    "hdfs": "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider",
    "rocksdb": "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
}


def kafka_source(reader, config: AggregatorConfig):
    """`reader` (spark.readStream, or spark.read for a range of offsets) on the job's topic:
    its brokers, the client's security settings and the subscription."""
    return (
        reader.format("kafka")
        .option("kafka.bootstrap.servers", config.bootstrap_servers)
        .options(**config.security.spark_options())
        .option("subscribe", config.topic)
    )


def read_kafka(spark: SparkSession, config: AggregatorConfig) -> DataFrame:
    reader = (
        kafka_source(spark.readStream, config)
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


def verify_job_checkpoint(files, config: AggregatorConfig) -> None:
    """Check that checkpoint `files` belong to this job's source topic and state shape (checkpoint.verify_checkpoint)."""
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
