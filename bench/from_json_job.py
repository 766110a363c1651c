"""The upper reference for the Spark job: the same Kafka source, session settings
(purchase_analytics.spark_session), windows and watermark, sink files and progress records
as the job, but values read by `from_json` alone, with no validation (a string, a fraction
or an out-of-range price goes through or becomes null). Run as `python -m bench.from_json_job`
with --available-now semantics: it reads what the topic holds, then stops."""

from __future__ import annotations

import json
import sys

from pyspark.sql import functions as F

from purchase_analytics.config import SettingsParser, load_settings, positive_int
from purchase_analytics.events import FIELDS
from purchase_analytics.sinks import JsonLinesSink, WindowSinks
from purchase_analytics.spark_session import SparkConfig, create_spark_session
from purchase_analytics.transform import aggregate_purchases

SCHEMA = ", ".join(f"{f.name} {f.spark_type}" for f in FIELDS)


def progress_record(progress: dict) -> dict:
    """Spark's progress report in the fields the benchmark reads from the job's records."""
    operators = progress.get("stateOperators") or [{}]
    return {
        "batch_id": progress["batchId"],
        "timestamp": progress.get("timestamp"),
        "messages": progress.get("numInputRows", 0),
        "processed_rows_per_s": progress.get("processedRowsPerSecond") or 0.0,
        "batch_duration_ms": progress.get("batchDuration", 0),
        "state_rows": operators[0].get("numRowsTotal", 0),
    }


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    p = SettingsParser(prog="python -m bench.from_json_job", description=__doc__, settings=settings)
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--progress-file", required=True)
    p.add_argument("--max-offsets-per-trigger", type=positive_int, required=True)
    p.add_setting("--master", "SPARK_MASTER_URL", str, "local[*]", help="Spark master URL")
    p.add_setting("--shuffle-partitions", "SHUFFLE_PARTITIONS", positive_int, 2, help="spark.sql.shuffle.partitions")
    p.add_setting("--window", "WINDOW_DURATION", str, "10 minutes", help="tumbling window length")
    p.add_setting("--watermark", "WATERMARK_DELAY", str, "10 minutes", help="watermark delay")
    p.add_setting("--session-timezone", "SESSION_TIMEZONE", str, "UTC", help="session time zone")
    a = p.parse_args(argv)
    spark = create_spark_session(
        "FromJsonReference", a.master, a.shuffle_partitions, a.session_timezone, SparkConfig.from_settings(settings)
    )
    raw = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", a.bootstrap_servers)
        .option("subscribe", a.topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", a.max_offsets_per_trigger)
        .load()
    )
    event = F.from_json(F.col("value").cast("string"), SCHEMA)
    events = raw.select(event["price"].alias("price"), F.timestamp_seconds(event["ts"]).alias("event_time"))
    query = (
        aggregate_purchases(events, a.window, a.watermark)
        .writeStream.queryName("from-json-windows")
        .outputMode("update")
        .option("checkpointLocation", a.checkpoint)
        .foreachBatch(WindowSinks([JsonLinesSink(a.output_dir)]))
        .trigger(availableNow=True)
        .start()
    )
    written = -1
    with open(a.progress_file, "a") as out:
        while True:
            done = query.awaitTermination(0.5)
            for progress in query.recentProgress:
                if progress.batchId > written:
                    out.write(json.dumps(progress_record(json.loads(progress.json))) + "\n")
                    written = progress.batchId
            if done:
                break
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
