"""`spark-scripts/spark-example.py`: the job's transformation and window fold on a static DataFrame, no Kafka."""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

from .config import AggregatorConfig, interval_seconds, load_settings, parse_aggregator_config
from .events import PurchaseEvent
from .job import fold_batch
from .sinks import ConsoleSink
from .spark_session import SparkConfig, create_spark_session
from .transform import batch_rows, parse_events
from .window_state import US, BatchOutcome, WindowState


def main(argv: list[str] | None = None) -> int:
    """`spark-example.py [MASTER]`: every other setting is the aggregator's (from .env)."""
    settings = load_settings()
    master = (argv if argv is not None else sys.argv[1:])[:1]
    config = parse_aggregator_config(["--master", *master] if master else [], settings)
    spark = create_spark_session(
        "SparkExample", config.master, config.shuffle_partitions, config.session_timezone, SparkConfig.from_settings(settings)
    )
    try:
        ConsoleSink().write(0, fold_example(spark, config).windows)
    finally:
        spark.stop()
    return 0


def fold_example(spark: SparkSession, config: AggregatorConfig) -> BatchOutcome:
    """Ten events over two windows and one message that is not JSON, parsed and folded as one batch."""
    events = [PurchaseEvent(f"order-{i}", i, "Chair", "red", 100 * (i + 1), 1_700_000_000 + 120 * i) for i in range(10)]
    raw = spark.createDataFrame([(e.to_json_bytes(),) for e in events] + [(b"not json",)], "value binary")
    state = WindowState(*(round(interval_seconds(t) * US) for t in (config.window_duration, config.watermark_delay)))
    return fold_batch(batch_rows(parse_events(raw, config.price_max)), state, 0, append=False)[0]
