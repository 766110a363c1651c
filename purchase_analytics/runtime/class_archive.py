"""The Spark JVM's class archive (JVM class data sharing, `-XX:SharedArchiveFile`).

A Spark JVM loads and links thousands of classes from pyspark's jars before the job reads a
message; mapping them from an archive saved about 30% of a start's CPU here. `make setup`
runs this module, which builds the archive once per installed Spark and JDK
(spark_session.class_archive_path, in the user's cache): a short training run, in a Spark
JVM launched by the project's own session code, of what every Spark entry point does at
start (the job's transformation and window fold on a static DataFrame, then a micro-batch
query through foreachBatch with a checkpoint). The JVM writes the classes it loaded into the
archive when it exits (`-XX:ArchiveClassesAtExit`), and every later Spark JVM maps it
(SPARK_CLASS_ARCHIVE=true, SparkConfig.java_options). The JVM checks that the archive
matches its own version and class path, and skips one that does not: that only costs
start-up time.

    python -m purchase_analytics.runtime.class_archive   # builds it unless it is there
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

from ..checkpoint import use_checkpoint_file_manager
from ..config import load_settings, parse_aggregator_config
from ..smoke import fold_example
from ..spark_session import SparkConfig, create_spark_session
from ..transform import STREAM_COLUMNS, CheckedBatch, dead_letter_records, parse_events, rejected_messages, window_partials

TRAINING_BATCHES = 3


def train(spark, config, work_dir: Path) -> None:
    """What a Spark entry point does at start, on tiny inputs."""
    fold_example(spark, config)
    numbers = spark.readStream.format("rate-micro-batch").option("rowsPerBatch", 20).option("numPartitions", 2).load()
    now = int(time.time())
    value = F.format_string(
        '{"order_id":"o%d","customer_id":%d,"furniture":"Chair","color":"red","price":%d,"ts":%d}',
        F.col("value"),
        F.col("value") + 1,
        F.col("value") * 1000,  # the first is 0: rejected
        F.lit(now) - F.col("value"),
    ).cast("binary")
    raw = numbers.select(
        value.alias("value"), F.lit("training").alias("topic"), F.lit(0).alias("partition"), F.col("value").alias("offset")
    )
    rows = parse_events(raw, config.price_max, config.max_future_s, batch_times_from=now).select(*STREAM_COLUMNS)

    check = CheckedBatch(config.max_future_s)  # once per job, as the job's handler builds it

    def handle(batch, batch_id: int) -> None:
        checked = check(batch, now).cache()
        window_partials(checked, 600_000_000).collect()
        dead_letter_records(rejected_messages(checked), config.dlq_max_value_bytes).collect()
        checked.unpersist()

    checkpoint = work_dir / "checkpoint"
    use_checkpoint_file_manager(spark, str(checkpoint))
    query = rows.writeStream.option("checkpointLocation", str(checkpoint)).foreachBatch(handle).trigger(processingTime="0 seconds").start()
    try:
        while query.lastProgress is None or query.lastProgress["batchId"] < TRAINING_BATCHES - 1:
            if query.exception():
                raise RuntimeError(str(query.exception()))
            time.sleep(0.2)
    finally:
        query.stop()


def build(archive: Path, settings: dict[str, str], spark_config: SparkConfig) -> None:
    config = parse_aggregator_config(["--master", "local[2]"], settings)
    partial = archive.with_name(f".{archive.name}.{os.getpid()}")
    # Quiet (it lists every class it leaves out), and with deeper thread stacks: in this mode
    # the stream execution thread ran out of stack in a regular expression (JDK 17).
    dump = f"-XX:ArchiveClassesAtExit={partial} -Xlog:cds*=off -Xss16m"
    spark_config = dataclasses.replace(spark_config, class_archive=None, driver_java_options=f"{spark_config.driver_java_options} {dump}")
    archive.parent.mkdir(parents=True, exist_ok=True)
    spark = create_spark_session("ClassArchive", config.master, config.shuffle_partitions, config.session_timezone, spark_config)
    jvm = spark.sparkContext._gateway.proc  # the Spark JVM: it writes the archive when it exits
    try:
        with tempfile.TemporaryDirectory(prefix="class-archive-") as work_dir:
            train(spark, config, Path(work_dir))
    finally:
        spark.stop()
        jvm.stdin.close()  # end of input: the JVM exits (pyspark's gateway protocol)
        jvm.wait(timeout=300)
    if jvm.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise SystemExit(f"error: the Spark JVM exited {jvm.returncode} without writing the class archive {archive}")
    partial.replace(archive)  # whole or not at all: a JVM never maps a half-written archive


def main() -> int:
    settings = load_settings()
    spark_config = SparkConfig.from_settings(settings)
    archive = spark_config.class_archive
    if archive is None:
        print("SPARK_CLASS_ARCHIVE is off: no class archive", file=sys.stderr)
    elif not archive.is_file():
        started = time.monotonic()
        print("building the Spark JVM's class archive (once per installed Spark and JDK) ...", file=sys.stderr, flush=True)
        build(archive, settings, spark_config)
        print(f"{archive}: {archive.stat().st_size / 2**20:.0f} MiB, built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
