"""Configuration, read once at each entry point into a frozen object.

Precedence for every setting: command line, then environment, then `.env`, then the
package's default (defaults.py, the one place each default is written). A program run
without `.env` (the --py-files zip on a cluster, a container) has the same defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from .defaults import DEFAULTS
from .kafka_client import KafkaSecurity, SecurityConfigError
from .options import (
    GROUP_FIELDS,
    STATE_STORES,
    fraction,
    group_fields,
    interval_seconds,
    master_url,
    non_negative_float,
    non_negative_int,
    non_negative_interval,
    optional_interval,
    optional_topic_name,
    positive_int,
    positive_interval,
    session_timezone,
    starting_offsets,
    topic_name,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = PROJECT_ROOT / ".env"


def user_cache_dir() -> Path:
    """What this project keeps per user, shared by every checkout (build/cached-venv.sh uses the same)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "purchase-analytics"


def load_settings(env_file: Path | None = ENV_FILE, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The package's defaults, `.env` over them and the environment over both. Empty values count as unset."""
    merged: dict[str, str] = {k: v for k, v in DEFAULTS.items() if v}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v})
    merged.update({k: v for k, v in (os.environ if environ is None else environ).items() if v})
    return merged


class SettingsParser(argparse.ArgumentParser):
    """argparse whose option defaults come from the environment / `.env` settings.

    `add_setting("--rate", "PRODUCER_RATE", float, help=...)` makes `--rate` win over
    `$PRODUCER_RATE`, which wins over `.env`, which wins over DEFAULTS["PRODUCER_RATE"];
    `default` is for options without a setting of their own.
    """

    def __init__(self, *args, settings: Mapping[str, str] | None = None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self.settings = load_settings() if settings is None else settings

    def error(self, message: str):
        """One line, not argparse's usage block: the problem, then where to look."""
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def add_setting(self, flag: str, env_name: str | None, type_=str, default=None, **kwargs):
        raw = (self.settings.get(env_name) or DEFAULTS.get(env_name)) if env_name else None
        if raw:
            try:
                default = type_(raw)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                self.error(f"{env_name}={raw!r} (from the environment or .env): {_type_problem(type_, exc)}")
        help_text = kwargs.pop("help", "")
        if env_name:
            help_text = f"{help_text} [env {env_name}]"
        self.add_argument(flag, type=type_, default=default, help=help_text, **kwargs)


def _type_problem(type_, exc: Exception) -> str:
    return str(exc) if isinstance(exc, argparse.ArgumentTypeError) else f"not a valid {getattr(type_, '__name__', 'value')}"


@dataclass(frozen=True)
class ProducerConfig:
    bootstrap_servers: str
    topic: str
    rate: float  # events per second; 0 means as fast as possible
    count: int  # 0 means forever
    seed: int | None
    late_fraction: float
    max_lateness_s: int
    price_max: int
    delivery_timeout_ms: int
    progress_interval_s: float = 5.0
    backend: str = "kafka-python"  # or "confluent" (optional confluent-kafka package)
    summary_file: str | None = None  # the final figures as JSON, for programs
    security: KafkaSecurity = field(default_factory=KafkaSecurity)


@dataclass(frozen=True)
class AggregatorConfig:
    bootstrap_servers: str
    topic: str
    dlq_topic: str | None
    master: str
    window_duration: str
    watermark_delay: str
    output_mode: str
    trigger_interval: str
    available_now: bool
    starting_offsets: str
    max_offsets_per_trigger: int | None
    max_poll_records: int  # Kafka's max.poll.records for Spark's consumers: records one poll returns
    max_future_s: int  # how far ahead of the processing time an event's ts may be
    dlq_max_value_bytes: int  # a dead letter's value is cut to this size, so it always fits the topic
    results_topic: str | None
    metrics_topic: str | None
    checkpoint_dir: str
    output_dir: str | None
    results_db: str | None
    progress_file: str | None
    shuffle_partitions: int
    session_timezone: str
    price_max: int
    console: bool
    timeout_s: float | None
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    slide_duration: str | None = None  # None: tumbling windows
    group_by: tuple[str, ...] = ()  # event fields each window is grouped by, besides the window
    state_store: str = "hdfs"  # Spark's state store provider: hdfs (the default) or rocksdb


PRODUCER_BACKENDS = ("kafka-python", "confluent")


def load_security(settings: Mapping[str, str] | None = None) -> KafkaSecurity:
    """The Kafka client security settings of `settings`, or of load_settings()."""
    return KafkaSecurity.from_settings(load_settings() if settings is None else settings)


def parse_security(parser: SettingsParser) -> KafkaSecurity:
    """KAFKA_SECURITY_PROTOCOL and friends (environment / .env only: no password on a command line)."""
    try:
        return KafkaSecurity.from_settings(parser.settings)
    except SecurityConfigError as exc:
        parser.error(str(exc))


def parse_producer_config(argv: list[str] | None = None, settings: Mapping[str, str] | None = None) -> ProducerConfig:
    p = SettingsParser(prog="event_producer.py", description="Send JSON purchase events to Kafka.", settings=settings)
    p.add_setting("--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", str, help="Kafka bootstrap servers")
    p.add_setting("--topic", "KAFKA_TOPIC_NAME", topic_name, help="topic to send to")
    p.add_setting("--rate", "PRODUCER_RATE", non_negative_float, help="events per second; 0 = as fast as possible")
    p.add_setting("--count", "PRODUCER_COUNT", non_negative_int, help="events to send; 0 = forever")
    p.add_setting("--seed", "PRODUCER_SEED", int, help="seed for a reproducible event sequence (event times still follow the clock)")
    p.add_setting("--late-fraction", "PRODUCER_LATE_FRACTION", fraction, help="fraction of events sent with a past event time")
    p.add_setting("--max-lateness-s", "PRODUCER_MAX_LATENESS_S", non_negative_int, help="how far in the past a late event may be, seconds")
    p.add_setting("--price-max", "PRICE_MAX", positive_int, help="largest price drawn")
    p.add_setting(
        "--delivery-timeout-ms",
        "PRODUCER_DELIVERY_TIMEOUT_MS",
        positive_int,
        help="how long a send is retried (broker down) before it counts as failed",
    )
    p.add_setting("--progress-interval-s", None, float, 5.0, help="seconds between progress lines")
    p.add_setting(
        "--backend",
        "PRODUCER_BACKEND",
        str,
        choices=PRODUCER_BACKENDS,
        help="Kafka client: kafka-python, or confluent (optional confluent-kafka package, several times faster)",
    )
    p.add_setting(
        "--summary-file", None, str, None, help="also write the final figures (sent, acknowledged, failed, events/s) here as JSON"
    )
    a = p.parse_args(argv)
    return ProducerConfig(
        bootstrap_servers=a.bootstrap_servers,
        topic=a.topic,
        rate=a.rate,
        count=a.count,
        seed=a.seed,
        late_fraction=a.late_fraction,
        max_lateness_s=a.max_lateness_s,
        price_max=a.price_max,
        delivery_timeout_ms=a.delivery_timeout_ms,
        progress_interval_s=a.progress_interval_s,
        backend=a.backend,
        summary_file=a.summary_file,
        security=parse_security(p),
    )


OUTPUT_MODES = ("update", "append")


def _add_kafka_options(p: SettingsParser) -> None:
    """The job's broker and its topics: the one it reads, and the ones it writes."""
    p.add_setting("--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", str, help="Kafka bootstrap servers")
    p.add_setting("--topic", "KAFKA_TOPIC_NAME", topic_name, help="topic to read")
    p.add_setting(
        "--dlq-topic", "KAFKA_DLQ_TOPIC_NAME", optional_topic_name, help="dead-letter topic for rejected messages ('' to disable)"
    )
    p.add_setting(
        "--results-topic",
        "KAFKA_RESULTS_TOPIC_NAME",
        optional_topic_name,
        help="compacted topic with the latest total per window, keyed by window start ('' to disable)",
    )
    p.add_setting(
        "--metrics-topic",
        "KAFKA_METRICS_TOPIC_NAME",
        optional_topic_name,
        help="topic with one JSON progress record per micro-batch ('' to disable)",
    )


def _add_query_options(p: SettingsParser) -> None:
    """How the job's queries read, check and aggregate: the master, the windows and their
    grouping, the watermark, the trigger and the offsets."""
    p.add_setting("--master", "SPARK_MASTER_URL", master_url, help="Spark master URL")
    p.add_setting("--window", "WINDOW_DURATION", positive_interval, help="window length")
    p.add_setting("--slide", "WINDOW_SLIDE", optional_interval, help="sliding windows: a new window every DURATION (empty: tumbling)")
    p.add_setting(
        "--group-by",
        "GROUP_BY",
        group_fields,
        (),  # unset: one total per window
        help=f"also group each window by these event fields, comma-separated: {', '.join(GROUP_FIELDS)} (empty: one total)",
    )
    p.add_setting("--state-store", "STATE_STORE", str, choices=STATE_STORES, help="Spark's state store provider")
    p.add_setting("--watermark", "WATERMARK_DELAY", non_negative_interval, help="how late an event may be and still count")
    p.add_setting(
        "--output-mode",
        "OUTPUT_MODE",
        str,
        choices=OUTPUT_MODES,
        help="update: changed windows each batch; append: closed windows once",
    )
    p.add_setting("--trigger", "TRIGGER_INTERVAL", non_negative_interval, help="micro-batch interval (not with --available-now)")
    p.add_argument("--available-now", action="store_true", help="process all data available now, then stop")
    p.add_setting(
        "--starting-offsets",
        "STARTING_OFFSETS",
        starting_offsets,
        help='where a new query starts: earliest, latest, or JSON offsets per partition: {"topic":{"0":23,"1":-2}}',
    )
    p.add_setting("--max-offsets-per-trigger", "MAX_OFFSETS_PER_TRIGGER", positive_int, help="cap on records per micro-batch")
    p.add_setting(
        "--max-poll-records",
        "KAFKA_MAX_POLL_RECORDS",
        positive_int,
        help="records one poll of Spark's Kafka consumer returns (Kafka's max.poll.records, 500 by default)",
    )
    p.add_setting(
        "--max-future-s",
        "EVENT_MAX_FUTURE_S",
        non_negative_int,
        help="an event whose ts is more than this many seconds ahead of the processing time is dead-lettered",
    )
    p.add_setting(
        "--dlq-max-value-bytes",
        "DLQ_MAX_VALUE_BYTES",
        positive_int,
        help="a dead letter's value is cut to this many bytes (with headers saying so) to fit the topic",
    )


def _add_output_options(p: SettingsParser) -> None:
    """Where the job keeps its checkpoint and writes its windows and progress."""
    p.add_setting(
        "--checkpoint",
        "CHECKPOINT_DIR",
        str,
        help="checkpoint directory (a restart resumes from it)",
    )
    p.add_setting("--output-dir", "OUTPUT_DIR", str, help="also write each batch's updated windows as JSON lines here")
    p.add_setting("--results-db", "RESULTS_DB", str, help="also keep the latest total per window in this SQLite file (restart-safe)")
    p.add_setting("--shuffle-partitions", "SHUFFLE_PARTITIONS", positive_int, help="spark.sql.shuffle.partitions (state store partitions)")
    p.add_setting("--session-timezone", "SESSION_TIMEZONE", session_timezone, help="time zone for window display: a zone name or an offset")
    p.add_setting("--price-max", "PRICE_MAX", positive_int, help="largest valid price")
    p.add_argument("--no-console", action="store_true", help="do not print the windows table")
    p.add_setting(
        "--progress-file", None, str, None, help="also append each micro-batch's progress here as a JSON line (the metrics topic's record)"
    )
    p.add_setting("--timeout-s", None, float, None, help="stop after this many seconds")


def parse_aggregator_config(argv: list[str] | None = None, settings: Mapping[str, str] | None = None) -> AggregatorConfig:
    p = SettingsParser(
        prog="purchase-aggregator.py", description="Sum purchase prices per event-time window from Kafka.", settings=settings
    )
    _add_kafka_options(p)
    _add_query_options(p)
    _add_output_options(p)
    a = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    if a.slide and interval_seconds(a.slide) > interval_seconds(a.window):
        p.error(f"argument --slide: {a.slide!r} is longer than the window ({a.window!r}): windows would leave gaps")
    if a.available_now and any(arg == "--trigger" or arg.startswith("--trigger=") for arg in given):
        p.error("--trigger and --available-now exclude each other: --available-now processes what is there, then stops")
    if a.starting_offsets.lstrip().startswith("{") and set(json.loads(a.starting_offsets)) != {a.topic}:
        named = sorted(json.loads(a.starting_offsets))
        p.error(f"--starting-offsets names the topics {named}, the job reads {a.topic!r}: give the offsets of its partitions only")
    return AggregatorConfig(
        bootstrap_servers=a.bootstrap_servers,
        topic=a.topic,
        dlq_topic=a.dlq_topic or None,
        master=a.master,
        results_topic=a.results_topic or None,
        metrics_topic=a.metrics_topic or None,
        max_future_s=a.max_future_s,
        dlq_max_value_bytes=a.dlq_max_value_bytes,
        window_duration=a.window,
        watermark_delay=a.watermark,
        output_mode=a.output_mode,
        trigger_interval=a.trigger,
        available_now=a.available_now,
        starting_offsets=a.starting_offsets,
        max_offsets_per_trigger=a.max_offsets_per_trigger,
        max_poll_records=a.max_poll_records,
        checkpoint_dir=a.checkpoint,
        output_dir=a.output_dir,
        results_db=a.results_db,
        progress_file=a.progress_file,
        shuffle_partitions=a.shuffle_partitions,
        session_timezone=a.session_timezone,
        price_max=a.price_max,
        console=not a.no_console,
        timeout_s=a.timeout_s,
        security=parse_security(p),
        slide_duration=a.slide or None,
        group_by=a.group_by,
        state_store=a.state_store,
    )
