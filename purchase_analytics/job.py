"""The streaming job's command line and its restart loop: the pre-flight checks (admin), then
the two queries (queries) supervised together until done, stopped or told to drain, each
failure a restart can heal (failures) restarted from the checkpoint, with each batch reported
as it completes (reporting).

Signals (signals.JobSignals): SIGINT/SIGTERM stop at once (the checkpoints stay consistent);
SIGUSR1 drains: process everything available now, then stop (`make run EVENTS=N` uses it).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession

from .admin import BrokerUnreachable, check_broker, ensure_output_topics, wait_for_topic
from .checkpoint import CheckpointError, CheckpointLock, checkpoint_files, local_path
from .config import AggregatorConfig, load_settings, parse_aggregator_config
from .failures import MAX_RESTARTS, JobFailed, backoff_s, classify_failure, first_line
from .progress import JobSummary
from .queries import WindowsHandler, start_queries, verify_job_checkpoint, window_sinks
from .reporting import ProgressReporter
from .signals import JobSignals
from .sinks import KafkaPublisher
from .spark_session import SparkConfig, create_spark_session, submitted_master


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
        verify_job_checkpoint(checkpoint_files(spark, config.checkpoint_dir), config)
    publisher = KafkaPublisher.for_job(config) if (config.results_topic or config.metrics_topic) else None
    handler = WindowsHandler(spark, config, window_sinks(config, publisher))
    deadline = time.monotonic() + config.timeout_s if config.timeout_s else None
    queries: list = []  # the running queries, replaced at each restart
    try:
        reporter = ProgressReporter(handler, config, summary, publisher, out)  # writes the records a stop left out first
        _supervise(spark, config, handler, reporter, queries, signals, deadline, out)
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


def _supervise(
    spark: SparkSession,
    config: AggregatorConfig,
    handler: WindowsHandler,
    reporter: ProgressReporter,
    queries: list,
    signals: JobSignals,
    deadline: float | None,
    out,
) -> None:
    """Start the queries into `queries` and watch them, reporting each batch, until they
    finish (--available-now), a signal, the deadline (then they drain) or a failure that a
    restart cannot heal; a failure a restart heals restarts them from the checkpoint."""
    restarts_in_row = 0
    queries[:] = start_queries(spark, config, handler)
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
            _before_restart(config, failed, restarts_in_row, reporter.summary, signals, out)
            reporter.batches_since_restart = 0
            queries[:] = start_queries(spark, config, handler)
            continue
        if not any(q.isActive for q in queries):
            return  # --available-now finished
        if signals.stop.is_set():
            print("stopping (signal received)", file=out, flush=True)
            return
        if signals.drain.is_set() or (deadline and time.monotonic() > deadline):
            for q in queries:
                q.processAllAvailable()
            return


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
                verify_job_checkpoint(checkpoint_files(None, str(path)), config)
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
