"""The defaults of every setting the producer, the job, the dashboard, the benchmark and the local
runtime read, each written once, here. `.env` at the project root (versions, images, the Docker
project) and the environment override them: the environment wins over `.env`, which wins over these.
An empty value means unset (off, for an optional feature); the command line's `--dlq-topic ''` turns
a topic off.

Plain Python on purpose: `python -m purchase_analytics.defaults` runs on any Python 3 without the
project's packages and prints them as NAME=value lines, which the Makefile includes (make and
docker compose get them from here, not from a second copy), as does a job without `.env` (the
--py-files zip on a cluster, a container).
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULTS: dict[str, str] = {
    # --- Kafka ---
    "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "KAFKA_CONTROLLER_PORT": "9093",
    "KAFKA_TOPIC_NAME": "test-topic",
    "KAFKA_TOPIC_PARTITIONS": "3",
    "KAFKA_DLQ_TOPIC_NAME": "test-topic-dlq",
    # Results: the latest total per window (compacted, keyed by window start, ISO-8601 UTC), and per-batch progress as JSON
    "KAFKA_RESULTS_TOPIC_NAME": "purchase-window-totals",
    "KAFKA_METRICS_TOPIC_NAME": "purchase-pipeline-metrics",
    # Local broker shape (docs/cluster.md): KAFKA_SECURITY=plaintext|sasl_ssl (SASL_SSL + SCRAM-SHA-512,
    # local CA, ACLs; mutual TLS on KAFKA_CONTROLLER_PORT and the port after it), KAFKA_BROKERS=1|3
    # (node i on the ports + (i-1) * KAFKA_CLUSTER_PORT_STEP, each with KAFKA_CLUSTER_HEAP)
    "KAFKA_SECURITY": "plaintext",
    "KAFKA_BROKERS": "1",
    "KAFKA_CLUSTER_PORT_STEP": "10",
    "KAFKA_CLUSTER_HEAP": "512m",
    # JVM options of the brokers the project starts (make run, make kafka; not the Docker image's; make bench takes
    # BENCH_KAFKA_BROKER_JAVA_OPTIONS): the G1 collector, short pauses beside the broker's request threads (the JDK's
    # own choice with 2+ cores and 2 GB, written out for smaller machines). Empty: the JDK's defaults. The tests' brokers
    # use their own.
    "KAFKA_BROKER_JAVA_OPTIONS": "-XX:+UseG1GC",
    # Client security, read by every Kafka client (docs/cluster.md). PLAINTEXT, SSL, SASL_PLAINTEXT or
    # SASL_SSL; PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Keep the password in a file (KAFKA_SASL_PASSWORD_FILE),
    # or export KAFKA_SASL_PASSWORD without writing it in .env. CA, client certificate and key are PEM files.
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "",
    "KAFKA_SASL_PASSWORD_FILE": "",
    "KAFKA_SSL_CA_LOCATION": "",
    "KAFKA_SSL_CERT_LOCATION": "",
    "KAFKA_SSL_KEY_LOCATION": "",
    # --- Producer defaults ---
    "PRODUCER_RATE": "10",
    "PRODUCER_COUNT": "0",
    "PRODUCER_LATE_FRACTION": "0.0",
    "PRODUCER_MAX_LATENESS_S": "900",
    "PRODUCER_DELIVERY_TIMEOUT_MS": "120000",
    "PRICE_MAX": "150000",
    # Empty: a fresh random sequence each run; a number makes it reproducible
    "PRODUCER_SEED": "",
    # kafka-python, or confluent (the optional confluent-kafka package)
    "PRODUCER_BACKEND": "kafka-python",
    # `make run`'s producer rate, events/s (`make spark-produce` uses PRODUCER_RATE)
    "RUN_PRODUCER_RATE": "200",
    # --- Spark job defaults ---
    "SPARK_MASTER_URL": "local[*]",
    # The windows (transform.aggregate_windows): their length, a slide for overlapping windows (empty: tumbling), and
    # event fields to split each window by, comma-separated: customer_id, furniture, color (empty: one total per window)
    "WINDOW_DURATION": "10 minutes",
    "WINDOW_SLIDE": "",
    "GROUP_BY": "",
    "WATERMARK_DELAY": "10 minutes",
    # Spark's state store of the open windows: hdfs (Spark's default, in memory with a log in the checkpoint) or rocksdb
    "STATE_STORE": "hdfs",
    "TRIGGER_INTERVAL": "5 seconds",
    "OUTPUT_MODE": "update",
    "STARTING_OFFSETS": "earliest",
    "MAX_OFFSETS_PER_TRIGGER": "",
    # Records one poll of Spark's Kafka consumers returns (Kafka's max.poll.records: with its default 500 the job read
    # about a fifth slower over the bench's topic, docs/performance.md)
    "KAFKA_MAX_POLL_RECORDS": "10000",
    # An event more than this far ahead of the processing time is dead-lettered (its time would move the watermark)
    "EVENT_MAX_FUTURE_S": "300",
    # A dead letter's value is cut to this many bytes (headers say so) so it always fits the dead-letter topic
    "DLQ_MAX_VALUE_BYTES": "1000000",
    "SHUFFLE_PARTITIONS": "2",
    "CHECKPOINT_DIR": ".data/checkpoints/purchase-aggregator",
    # Optional extra sinks, off when empty: JSON lines per batch, and the latest total per window in SQLite
    "OUTPUT_DIR": "",
    "RESULTS_DB": "",
    "SESSION_TIMEZONE": "UTC",
    "SPARK_LOG_LEVEL": "WARN",
    # The driver's web UI (port 4040) is off for local runs; the Docker master turns it on.
    "SPARK_UI_ENABLED": "false",
    # The driver JVM's heap (spark.driver.memory), sized by make bench's state run (docs/performance.md); Spark refuses
    # less than 450m (with the parallel collector below, a 480m heap reports less); empty: Spark's default (1g)
    "SPARK_DRIVER_MEMORY": "560m",
    # Extra JVM options of the Spark driver (local mode: the whole Spark JVM; make bench takes
    # BENCH_SPARK_DRIVER_JAVA_OPTIONS). The parallel collector: it collects in pauses with no concurrent threads
    # competing with the tasks (on two cores, make bench: 10-40% more rows/s, 9-21% less CPU, about 120 MB less
    # memory than G1, docs/performance.md). The tests set -XX:TieredStopAtLevel=1 -XX:+UseSerialGC (their
    # short-lived JVMs start faster)
    "SPARK_DRIVER_JAVA_OPTIONS": "-XX:+UseParallelGC",
    # Spark's Kafka connector jars (make jars) and the package zip for executors (make package),
    # relative to the project root; the Docker image sets its own.
    "SPARK_CONNECTOR_JARS_DIR": ".cache/jars/spark-kafka",
    # The Spark JVM's class archive (JVM class data sharing): `make setup` builds one per installed Spark and JDK into
    # the user's cache (~/.cache/purchase-analytics/jvm) from a short training run, and a Spark JVM that maps it starts
    # with about a third less CPU. false: never used.
    "SPARK_CLASS_ARCHIVE": "true",
    # The JDK of the Spark JVMs the project starts (the local driver, make spark's master and worker). default: JAVA_HOME or
    # `java` on PATH, as for the broker. auto: an installed JDK 25 under /usr/lib/jvm when there is one (the tests run Spark
    # on 17 and 25), whose class archive is then an ahead-of-time cache (linked classes and the training's method profiles):
    # in alternated runs it read no faster than JDK 17 with its class archive (docs/performance.md). Or a JDK's home.
    "SPARK_JAVA_HOME": "default",
    "PACKAGE_ZIP": ".cache/purchase_analytics.zip",
    # --- Local standalone Spark (make spark, RUNTIME=local) ---
    "SPARK_MASTER_PORT": "7077",
    "SPARK_MASTER_UI_PORT": "8080",
    "SPARK_WORKER_CORES": "2",
    "SPARK_WORKER_MEMORY": "2g",
    # --- The Kafka UI and the dashboard (make kafka, make run, make dashboard) ---
    "KAFKA_UI_PORT": "8083",
    "DASHBOARD_PORT": "8084",
    # The dashboard listens here and shows this many of the latest windows
    "DASHBOARD_HOST": "127.0.0.1",
    "DASHBOARD_WINDOWS": "12",
    # --- Benchmark (make bench; python -m bench --help) ---
    "BENCH_PRODUCER_EVENTS": "1000000",
    "BENCH_SPARK_EVENTS": "4000000",
    # The traffic every system reads (bench/traffic.py): event times over this span, ending a minute before now,
    # on-time events at most BENCH_EVENT_JITTER_S older than the newest before them, and small shares of
    # invalid messages and of very late events (from the day before the first event: every system drops them)
    "BENCH_EVENT_SPAN": "24 hours",
    "BENCH_EVENT_JITTER_S": "120",
    "BENCH_INVALID_FRACTION": "0.002",
    "BENCH_LATE_FRACTION": "0.001",
    "BENCH_PROFILE_EVENTS": "300000",
    "BENCH_PAYLOAD_LINES": "100000",
    "BENCH_WARMUP_BATCHES": "5",
    # Input a streaming job gets before its latency and rate steps are measured: on 2 cores the JIT
    # keeps compiling Spark's per-batch driver code for about three minutes (docs/performance.md)
    "BENCH_WARMUP_S": "180",
    "BENCH_MAX_OFFSETS_PER_TRIGGER": "1000000",
    "BENCH_TOPIC_PARTITIONS": "2",
    "BENCH_SHUFFLE_PARTITIONS": "2",
    "BENCH_SPARK_MASTER": "local[2]",
    "BENCH_LATENCY_RATE": "10000",
    "BENCH_LATENCY_S": "30",
    # The latency run's trigger: a micro-batch as soon as the one before ends (the steady-rate steps use 1 second)
    "BENCH_LATENCY_TRIGGER": "0 seconds",
    "BENCH_STEP_RATES": "10000,20000,40000,80000,120000,150000,180000",
    "BENCH_STEP_S": "20",
    "BENCH_MEMORY_S": "180",
    "BENCH_MEMORY_RATE": "5000",
    "BENCH_MEMORY_WINDOW": "10 seconds",
    "FLINK_CONNECTOR_JARS_DIR": ".cache/jars/flink-kafka",
    "BENCH_FLINK_PARALLELISM": "2",
}


def setting(settings: Mapping[str, str], name: str) -> str:
    """`name` from settings (the environment and .env, load_settings), else its default here; '' when neither has it."""
    return settings.get(name) or DEFAULTS.get(name, "")


if __name__ == "__main__":
    print("\n".join(f"{name}={value}" for name, value in DEFAULTS.items()))
