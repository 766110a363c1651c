"""`python -m bench` (`make bench`): start a broker, measure, print the table, write JSON
to results/. `--smoke` runs every phase on tiny inputs in about a minute (for the test)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from purchase_analytics.config import PROJECT_ROOT, SettingsParser, load_settings
from purchase_analytics.defaults import setting as setting_or_default
from purchase_analytics.jvm import ensure_java
from purchase_analytics.options import fraction, interval_seconds, non_negative_float, positive_int, positive_interval
from purchase_analytics.runtime.kafka_broker import KafkaBroker, broker_java_options
from purchase_analytics.runtime.local import KAFKA_JARS
from purchase_analytics.runtime.processes import free_port

from . import report, run, systems
from .common import Bench, Rules, TreeSampler

PHASES = ("ceiling", "producer", "traffic", "baseline", "spark", "peers", "stream", "memory")
NEEDS_TRAFFIC = ("baseline", "spark", "peers")
SMOKE = {
    "producer_events": 10_000,
    "spark_events": 12_000,  # three micro-batches; the span is laid across two windows (bench/traffic.py)
    "max_offsets_per_trigger": 4_000,
    "payload_lines": 5_000,
    "step_rates": "1000",
    "step_s": 2.0,
    "warmup_batches": 1,
    "warmup_s": 0.0,
    "latency_rate": 1000,
    "latency_s": 2.0,
    # not back to back (between a few small batches the job waits instead of polling the
    # broker), and the rate steps' trigger: one job then takes both (run.phase_stream)
    "latency_trigger": run.STEADY_TRIGGER,
    "memory_s": 5.0,
    "memory_rate": 1000,
    "profile_events": 0,
}
# --smoke checks that every figure is measured, not what it is: the phases that mostly wait
# (for a rate, a duration, batches) run beside the others and beside each other, the systems
# over the traffic topic run at the same time, and every JVM compiles with C1 only (much less
# compile work for a run of seconds).
SMOKE_ALONGSIDE = ("stream", "memory")
SMOKE_TOGETHER = ("spark", "peers")
SMOKE_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"


def parse_args(argv: list[str] | None):
    """Every default comes from the BENCH_* settings (purchase_analytics/defaults.py; .env, the environment, the command line win)."""
    p = SettingsParser(prog="python -m bench", description=__doc__)

    def setting(flag: str, env_name: str, type_, help: str) -> None:
        if env_name not in p.settings:
            raise SystemExit(f"error: {env_name} is not set; its default belongs in purchase_analytics/defaults.py")
        p.add_setting(flag, env_name, type_, None, help=help)

    p.add_argument("--smoke", action="store_true", help="tiny inputs, every phase, about a minute")
    p.add_setting("--phases", None, str, ",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES))
    setting("--producer-events", "BENCH_PRODUCER_EVENTS", positive_int, "events per producer run")
    setting("--profile-events", "BENCH_PROFILE_EVENTS", int, "events per py-spy profiled producer run; 0 = no profile")
    setting(
        "--spark-events", "BENCH_SPARK_EVENTS", positive_int, "events in the traffic topic every system reads (and the perf tools send)"
    )
    setting("--event-span", "BENCH_EVENT_SPAN", positive_interval, "event time the traffic spans, ending a minute before now")
    setting("--event-jitter-s", "BENCH_EVENT_JITTER_S", non_negative_float, "how much older than the newest event an on-time event may be")
    setting("--invalid-fraction", "BENCH_INVALID_FRACTION", fraction, "share of invalid messages in the traffic")
    setting("--late-fraction", "BENCH_LATE_FRACTION", fraction, "share of very late events (every system drops them)")
    setting("--payload-lines", "BENCH_PAYLOAD_LINES", positive_int, "distinct events in the perf tool's payload file")
    setting("--max-offsets-per-trigger", "BENCH_MAX_OFFSETS_PER_TRIGGER", positive_int, "micro-batch size for --available-now")
    setting("--partitions", "BENCH_TOPIC_PARTITIONS", positive_int, "partitions of the bench topics (one Spark task each)")
    setting("--shuffle-partitions", "BENCH_SHUFFLE_PARTITIONS", positive_int, "the job's --shuffle-partitions")
    setting("--master", "BENCH_SPARK_MASTER", str, "Spark master for the job")
    setting("--latency-rate", "BENCH_LATENCY_RATE", positive_int, "events/s while latency is measured")
    setting("--latency-s", "BENCH_LATENCY_S", float, "seconds of latency measurement")
    setting("--latency-trigger", "BENCH_LATENCY_TRIGGER", str, "the job's trigger while latency is measured")
    setting("--step-rates", "BENCH_STEP_RATES", str, "input rates tried at a 1 s trigger")
    setting("--step-s", "BENCH_STEP_S", float, "seconds per rate step")
    setting("--warmup-batches", "BENCH_WARMUP_BATCHES", positive_int, "batches a streaming job runs before it is measured")
    setting("--warmup-s", "BENCH_WARMUP_S", non_negative_float, "seconds of input a streaming job gets before its latency and rate steps")
    setting("--memory-s", "BENCH_MEMORY_S", float, "duration of the steady run watched for state and memory")
    setting("--memory-rate", "BENCH_MEMORY_RATE", positive_int, "events/s during the memory run")
    setting("--memory-window", "BENCH_MEMORY_WINDOW", str, "window and watermark during the memory run")
    p.add_setting("--before", None, str, None, help="also run the default job with the aggregator of this git revision")
    p.add_argument(
        "--profile-spark", action="store_true", help="run the default job once more under Java Flight Recorder (where its CPU goes)"
    )
    p.add_setting("--results-dir", None, str, str(PROJECT_ROOT / "results"), help="where the JSON goes")
    args = p.parse_args(argv)
    if args.smoke:
        # The traffic keeps the full run's density of events in time (a shorter span), so
        # a system that reads a partition in chunks sees the same event-time skew as in the full run.
        span_s = interval_seconds(args.event_span) * SMOKE["spark_events"] / args.spark_events
        for key, value in {**SMOKE, "event_span": f"{max(60, round(span_s))} seconds"}.items():
            setattr(args, key, value)
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        p.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    return args


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?"
    )
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")))
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 2**20, 1),
        "os": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }


def versions(settings: dict) -> dict:
    import confluent_kafka
    import kafka
    import pyspark

    from purchase_analytics.spark_session import SparkConfig

    def java_version(java: str) -> str:
        lines = subprocess.run([java, "-version"], capture_output=True, text=True).stderr.splitlines()
        return next((line for line in lines if not line.startswith("Picked up JAVA_TOOL_OPTIONS")), "?")

    spark_java_home = SparkConfig.from_settings(settings).java_home
    return {
        "python": platform.python_version(),
        "java": java_version(ensure_java()),
        "spark java": java_version(str(spark_java_home / "bin" / "java")) if spark_java_home else "the same",
        "spark": pyspark.__version__,
        "kafka": settings.get("KAFKA_VERSION", "?"),
        "kafka-python": kafka.__version__,
        "confluent-kafka": confluent_kafka.version(),
        "spark.driver.memory": settings.get("SPARK_DRIVER_MEMORY") or "Spark's default",
        "broker JVM options": " ".join(broker_java_options(settings)) or "the JDK's",
    }


def rules(settings: dict) -> Rules:
    """The job's own defaults: every system over the traffic topic applies them."""
    try:
        return Rules(
            window_s=int(interval_seconds(setting_or_default(settings, "WINDOW_DURATION"))),
            watermark_s=int(interval_seconds(setting_or_default(settings, "WATERMARK_DELAY"))),
            price_max=int(setting_or_default(settings, "PRICE_MAX")),
            max_future_s=int(setting_or_default(settings, "EVENT_MAX_FUTURE_S")),
        )
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise SystemExit(f"error: the job's settings (WINDOW_DURATION, WATERMARK_DELAY, PRICE_MAX, EVENT_MAX_FUTURE_S): {exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings()
    phases = set(args.phases.split(","))
    if phases & set(NEEDS_TRAFFIC):
        phases.add("traffic")
    if args.before:
        args.before = systems.check_revision(args.before)[:12]  # a typo fails now, not after twenty minutes; HEAD stays this HEAD
    results: dict = {
        "machine": machine(),
        "versions": versions(settings),
        "settings": {k: v for k, v in vars(args).items() if k != "results_dir"},
        "phases": {},
    }
    if args.smoke:  # inherited by every JVM this run starts: the broker, the perf tools, Spark, peers
        os.environ["JAVA_TOOL_OPTIONS"] = f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {SMOKE_JAVA_OPTIONS}".strip()
    work_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    broker = KafkaBroker(KAFKA_JARS, work_dir / "kafka", free_port(), free_port(), jvm_options=broker_java_options(settings))
    print(f"starting a broker at {broker.bootstrap_servers} (data in {work_dir})", file=sys.stderr, flush=True)
    broker.start()
    bench = Bench(
        broker.bootstrap_servers,
        work_dir,
        args.partitions,
        args.master,
        args.shuffle_partitions,
        args.max_offsets_per_trigger,
        rules(settings),
    )
    results["rules"] = bench.rules.as_dict()
    started = time.monotonic()
    whole_run = TreeSampler(os.getpid(), interval_s=1.0).__enter__()  # every process this run starts, the broker included
    try:
        steps = {
            "ceiling": lambda: run.phase_ceiling(bench, args.spark_events, args.payload_lines),
            "producer": lambda: run.phase_producer(bench, args.producer_events, args.profile_events),
            "traffic": lambda: run.phase_traffic(
                bench, args.spark_events, interval_seconds(args.event_span), args.event_jitter_s, args.invalid_fraction, args.late_fraction
            ),
            "baseline": lambda: run.phase_baseline(bench),
            "spark": lambda: run.phase_spark(bench, args.before, profile=args.profile_spark, together=args.smoke),
            "peers": lambda: run.phase_peers(bench, together=args.smoke),
            "stream": lambda: run.phase_stream(
                bench,
                args.latency_rate,
                args.latency_s,
                args.latency_trigger,
                [int(r) for r in args.step_rates.split(",")],
                args.step_s,
                run.Warmup(args.warmup_batches, args.warmup_s),
            ),
            "memory": lambda: run.phase_memory(bench, args.memory_rate, args.memory_s, args.memory_window, run.Warmup(args.warmup_batches)),
        }

        def run_phase(name: str) -> None:
            t0 = time.monotonic()
            print(f"[{time.monotonic() - started:6.0f}s] {name} ...", file=sys.stderr, flush=True)
            results[name] = run.attempt(steps[name])
            results["phases"][name] = {"seconds": round(time.monotonic() - t0, 1), "loadavg_1min_after": round(os.getloadavg()[0], 2)}

        ordered = [name for name in PHASES if name in phases]
        beside = [name for name in ordered if args.smoke and name in SMOKE_ALONGSIDE]
        groups: list[list[str]] = []
        for name in (name for name in ordered if name not in beside):
            if args.smoke and groups and name in SMOKE_TOGETHER and groups[-1][-1] in SMOKE_TOGETHER:
                groups[-1].append(name)
            else:
                groups.append([name])
        # a full run keeps to the main thread (Ctrl-C stops its process)
        with ThreadPoolExecutor(max_workers=len(SMOKE_ALONGSIDE) + len(SMOKE_TOGETHER)) as pool:
            background = [pool.submit(run_phase, name) for name in beside]
            for first, *others in groups:
                running = [pool.submit(run_phase, name) for name in others]
                run_phase(first)
                for phase in running:
                    phase.result()
            for phase in background:
                phase.result()
    finally:
        broker.stop()
        whole_run.__exit__()
        results["machine"]["loadavg_at_end"] = os.getloadavg()
        results["machine"]["bench_cpu_s"] = whole_run.cpu_s
        results["machine"]["bench_seconds"] = round(time.monotonic() - started, 1)
        systems.compare_totals(report.systems(results), results.get("baseline"))
        results["table"] = report.rows(results)
        results["systems_table"] = report.system_rows(results)
        out = Path(args.results_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"bench-{'smoke-' if args.smoke else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(results, indent=2, default=str))
        print(report.markdown(results))
        print(f"\nresults: {path}", file=sys.stderr)
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
