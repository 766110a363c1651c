"""The upper reference for the Spark job: the job itself (its options, Kafka source,
session, windows, sinks and progress records), with the parse
and validation replaced by `from_json` alone. A string, a fraction or an out-of-range
price goes through or becomes null; nothing is rejected. Run as
`python -m bench.from_json_job` with the job's options (`--available-now` included)."""

from __future__ import annotations

import io
import sys

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from purchase_analytics.config import load_settings, parse_aggregator_config
from purchase_analytics.progress import JobSummary
from purchase_analytics.queries import WindowsHandler, start_queries, window_sinks
from purchase_analytics.reporting import ProgressReporter
from purchase_analytics.spark_session import SparkConfig, create_spark_session
from purchase_analytics.transform import EVENT_COLUMNS, EVENT_SCHEMA, SOURCE_COLUMNS


def from_json_only(raw: DataFrame, *_rules) -> DataFrame:
    event = F.from_json(F.col("value").cast("string"), EVENT_SCHEMA)
    return raw.select(
        *[event[name].alias(name) for name in EVENT_COLUMNS if name != "event_time"],
        F.timestamp_seconds(event["ts"]).alias("event_time"),
        F.lit(None).cast("string").alias("rejection_reason"),
        F.lit(None).cast("binary").alias("value"),
        *SOURCE_COLUMNS,
    )


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    config = parse_aggregator_config(argv, settings)
    spark = create_spark_session(
        "FromJsonReference", config.master, config.shuffle_partitions, config.session_timezone, SparkConfig.from_settings(settings)
    )
    handler = WindowsHandler(spark, config, window_sinks(config, None))
    reporter = ProgressReporter(handler, config, JobSummary(), None, io.StringIO())
    query, *others = start_queries(spark, config, handler, parse=from_json_only)
    try:
        while not query.awaitTermination(0.5):
            reporter.report(query)
    finally:
        reporter.report(query)
        for other in others:
            other.stop()
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
