"""`spark-scripts/spark-example.py`: the job's transformation and Spark's window aggregation on a static DataFrame, no Kafka."""

from __future__ import annotations

import sys

from pyspark.sql import DataFrame, SparkSession

from .config import AggregatorConfig, load_settings, parse_aggregator_config
from .events import PurchaseEvent
from .sinks import ConsoleSink
from .spark_session import SparkConfig, create_spark_session
from .transform import aggregate_windows, parse_events, valid_events


def main(argv: list[str] | None = None) -> int:
    """`spark-example.py [MASTER]`: every other setting is the aggregator's (from .env)."""
    settings = load_settings()
    master = (argv if argv is not None else sys.argv[1:])[:1]
    config = parse_aggregator_config(["--master", *master] if master else [], settings)
    spark = create_spark_session(
        "SparkExample", config.master, config.shuffle_partitions, config.session_timezone, SparkConfig.from_settings(settings)
    )
    try:
        windows = example_windows(spark, config).orderBy("window_start", *config.group_by).collect()
        ConsoleSink(config.session_timezone, config.group_by).write(0, windows)
    finally:
        spark.stop()
    return 0


def example_windows(spark: SparkSession, config: AggregatorConfig) -> DataFrame:
    """Ten events over two windows and one message that is not JSON, parsed and aggregated
    as the job does (on a static DataFrame the watermark has nothing to drop)."""
    events = [PurchaseEvent(f"order-{i}", i, "Chair", "red", 100 * (i + 1), 1_700_000_000 + 120 * i) for i in range(10)]
    raw = spark.createDataFrame([(e.to_json_bytes(),) for e in events] + [(b"not json",)], "value binary")
    parsed = parse_events(raw, config.price_max, config.max_future_s)
    return aggregate_windows(valid_events(parsed), config.window_duration, config.watermark_delay, config.slide_duration, config.group_by)
