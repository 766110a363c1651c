"""The JVM class archives of Spark and of the Kafka broker (JVM class data sharing,
`-XX:SharedArchiveFile`).

A Spark JVM loads and links thousands of classes from pyspark's jars before the job reads a
message; mapping them from an archive saves about 30% of a start's CPU, and about 30%
of a broker's (format and start). `make setup` runs this module, which builds each
archive once per installed Spark (or Kafka jars), JDK and training (this module), in the
user's cache (spark_session.class_archive_path, kafka_broker.class_archive_path). The
training is a short run of what the JVMs do for the pipeline, on one broker of the project's
own runtime code on free ports:
  - the broker: a topic created, events produced, then consumed in a group;
  - Spark, in a JVM launched by the project's own session code: the job's transformation
    and window sums on a static DataFrame (smoke.example_windows), then the job itself (job.run_job) over that topic
    with --available-now, in three micro-batches, with dead letters.
A JVM writes the classes it loaded into its archive when it exits
(`-XX:ArchiveClassesAtExit`), and every later JVM of the same class path maps it
(SPARK_CLASS_ARCHIVE=true, SparkConfig.java_options; KafkaBroker.class_archive). On JDK 25
(Spark's with SPARK_JAVA_HOME=auto where one is installed) the archive is an ahead-of-time
cache (`-XX:AOTCacheOutput`): the classes also linked, and the training's method profiles,
so the JIT compiles the job's hot code sooner (jvm.class_archive_options). The JVM
checks that an archive matches its own version and class path, and skips one that does not:
that only costs start-up time.

    python -m purchase_analytics.runtime.class_archive   # builds them unless they are there
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..admin import create_topics, ensure_output_topics
from ..config import AggregatorConfig, load_settings, parse_aggregator_config
from ..events import event_json_bytes
from ..job import run_job
from ..jvm import class_archive_options
from ..smoke import example_windows
from ..spark_session import SparkConfig, create_spark_session
from .kafka_broker import KafkaBroker, broker_java_options, class_archive_path
from .local import KAFKA_JARS
from .processes import free_port, log_tail

TOPIC = "training"
EVENTS = 300  # and three that are not events: dead letters
BATCH = 101  # messages per micro-batch: three batches


def dumping(archive: Path) -> tuple[Path, tuple[str, ...]]:
    """Where a JVM writes `archive` as it exits (renamed into place once whole: a JVM never
    maps a half-written one), and the options that make it (quiet: it lists every class it
    leaves out)."""
    partial = archive.with_name(f".{archive.name}.{os.getpid()}")
    partial.parent.mkdir(parents=True, exist_ok=True)  # before the first JVM that writes there
    return partial, tuple(class_archive_options(archive, write_to=partial))


def fill_topic(bootstrap_servers: str) -> None:
    """The broker's part: the topic, the job's wire form in and out, a group's offsets."""
    from kafka import KafkaConsumer, KafkaProducer

    create_topics(bootstrap_servers, {TOPIC: 2})
    now = int(time.time())
    values = [event_json_bytes(f"o{i}", 1 + i, "Chair", "red", 100 + i, now - 3 * i) for i in range(EVENTS)]
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    for value in [*values, b"not json", b"{}", event_json_bytes("o", 1, "Lamp", "red", 100, now)]:
        producer.send(TOPIC, value=value)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap_servers, group_id=TOPIC, auto_offset_reset="earliest")
    deadline, read = time.monotonic() + 60, 0  # joining the group takes a while on a busy machine
    try:
        while read < EVENTS + 3 and time.monotonic() < deadline:
            read += sum(len(records) for records in consumer.poll(timeout_ms=1000).values())
        consumer.commit()
    finally:
        consumer.close()
    if read != EVENTS + 3:
        raise RuntimeError(f"the training broker returned {read} of {EVENTS + 3} messages")


def training_config(settings: dict[str, str], bootstrap_servers: str, work_dir: Path) -> AggregatorConfig:
    return parse_aggregator_config(
        [
            *("--master", "local[2]", "--bootstrap-servers", bootstrap_servers, "--topic", TOPIC),
            *("--checkpoint", str(work_dir / "checkpoint"), "--available-now", "--max-offsets-per-trigger", str(BATCH)),
            *("--dlq-topic", f"{TOPIC}-dead-letters", "--no-console", "--output-dir", str(work_dir / "out")),
        ],
        settings,
    )


def train_spark(spark, config: AggregatorConfig) -> None:
    """What a Spark entry point does: the aggregation on a static DataFrame, then the job's own run."""
    example_windows(spark, config).collect()
    ensure_output_topics(config)
    with open(os.devnull, "w") as quiet:
        summary = run_job(config, out=quiet, spark=spark)
    if summary.messages != EVENTS + 3:
        raise RuntimeError(f"the training job read {summary.messages} of {EVENTS + 3} messages")


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """This process's standard output and error, and so those of the JVMs it launches
    meanwhile, go to `log`: a JVM that writes an ahead-of-time cache reports each step of it
    there, with its whole class path, at exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def build_spark(archive: Path, settings: dict[str, str], bootstrap_servers: str) -> None:
    partial, dump = dumping(archive)
    # With deeper thread stacks: in this mode the stream execution thread ran out of stack in
    # a regular expression (JDK 17).
    options = " ".join([*dump, "-Xss16m"])
    spark_config = SparkConfig.from_settings(settings)
    spark_config = dataclasses.replace(
        spark_config, class_archive=None, driver_java_options=f"{spark_config.driver_java_options} {options}"
    )
    with tempfile.TemporaryDirectory(prefix="class-archive-spark-") as work_dir, output_to(Path(work_dir) / "spark.log"):
        config = training_config(settings, bootstrap_servers, Path(work_dir))
        spark = create_spark_session("ClassArchive", config.master, config.shuffle_partitions, config.session_timezone, spark_config)
        jvm = spark.sparkContext._gateway.proc  # the Spark JVM: it writes the archive when it exits
        try:
            train_spark(spark, config)
        finally:
            spark.stop()
            jvm.stdin.close()  # end of input: the JVM exits (pyspark's gateway protocol)
            jvm.wait(timeout=300)
        output = log_tail(Path(work_dir) / "spark.log")
    if jvm.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise SystemExit(
            f"error: the Spark JVM exited {jvm.returncode} without writing the class archive {archive}; its output ends:\n{output}"
        )
    partial.replace(archive)  # whole or not at all: a JVM never maps a half-written archive


def build(settings: dict[str, str], spark_archive: Path | None, kafka_archive: Path | None) -> None:
    """The archives asked for (None: there already or off), around one training broker."""
    partial, dump = dumping(kafka_archive) if kafka_archive else (None, ())
    with tempfile.TemporaryDirectory(prefix="class-archive-kafka-") as work_dir:
        options = (*broker_java_options(settings), *dump)
        broker = KafkaBroker(KAFKA_JARS, Path(work_dir), free_port(), free_port(), jvm_options=options, class_archive=not partial)
        try:
            broker.start()
            if partial:
                partial.unlink(missing_ok=True)  # the storage formatter's, which exited first; the broker's comes at its exit
            fill_topic(broker.bootstrap_servers)
            if spark_archive:
                build_spark(spark_archive, settings, broker.bootstrap_servers)
        finally:
            broker.stop(timeout_s=120)  # a controlled shutdown: the JVM writes its archive as it exits
    if partial:
        if not partial.is_file():
            raise SystemExit(f"error: the Kafka broker stopped without writing the class archive {kafka_archive}")
        partial.replace(kafka_archive)


def main() -> int:
    settings = load_settings()
    spark_archive = SparkConfig.from_settings(settings).class_archive
    if spark_archive is None:
        print("SPARK_CLASS_ARCHIVE is off: no class archive for Spark", file=sys.stderr)
    kafka_archive = class_archive_path(KAFKA_JARS)
    missing = [a for a in (spark_archive, kafka_archive) if a and not a.is_file()]
    if not missing:
        return 0
    started = time.monotonic()
    print("building the JVM class archives of Spark and Kafka (once per installed version and JDK) ...", file=sys.stderr, flush=True)
    try:
        build(settings, *(a if a in missing else None for a in (spark_archive, kafka_archive)))
    except RuntimeError as exc:  # the jars missing, the broker or the job failing: one line
        raise SystemExit(f"error: building the class archives: {exc}") from None
    for archive in missing:
        print(f"{archive}: {archive.stat().st_size / 2**20:.0f} MiB", file=sys.stderr)
    print(f"built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
