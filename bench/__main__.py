"""`python -m bench` (`make bench`): start a broker, measure, print the table, write JSON
to results/. `--smoke` runs every phase on tiny inputs in about a minute (for the test)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from purchase_analytics.config import PROJECT_ROOT, SettingsParser, positive_int
from purchase_analytics.runtime.kafka_broker import KafkaBroker
from purchase_analytics.runtime.processes import free_port

from . import report, run
from .common import KAFKA_JARS, Bench

PHASES = ("ceiling", "producer", "spark", "baseline", "stream", "memory")
SMOKE = {
    "producer_events": 20_000,
    "spark_events": 60_000,
    "max_offsets_per_trigger": 20_000,
    "payload_lines": 5_000,
    "step_rates": "1000",
    "step_s": 4.0,
    "warmup_batches": 1,
    "latency_rate": 1000,
    "latency_s": 4.0,
    "memory_s": 8.0,
    "memory_rate": 1000,
    "profile_events": 0,
}


def parse_args(argv: list[str] | None):
    """Every default comes from the BENCH_* lines of .env (the environment wins, then the command line)."""
    p = SettingsParser(prog="python -m bench", description=__doc__)

    def setting(flag: str, env_name: str, type_, help: str) -> None:
        if env_name not in p.settings:
            raise SystemExit(f"error: {env_name} is not set; it belongs in .env")
        p.add_setting(flag, env_name, type_, None, help=help)

    p.add_argument("--smoke", action="store_true", help="tiny inputs, every phase, about a minute")
    p.add_setting("--phases", None, str, ",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES))
    setting("--producer-events", "BENCH_PRODUCER_EVENTS", positive_int, "events per producer run")
    setting("--profile-events", "BENCH_PROFILE_EVENTS", int, "events per py-spy profiled producer run; 0 = no profile")
    setting("--spark-events", "BENCH_SPARK_EVENTS", positive_int, "events pre-filled for --available-now and the baseline")
    setting("--payload-lines", "BENCH_PAYLOAD_LINES", positive_int, "distinct events in the perf tool's payload file")
    setting("--max-offsets-per-trigger", "BENCH_MAX_OFFSETS_PER_TRIGGER", positive_int, "micro-batch size for --available-now")
    setting("--partitions", "BENCH_TOPIC_PARTITIONS", positive_int, "partitions of the bench topics (one Spark task each)")
    setting("--shuffle-partitions", "BENCH_SHUFFLE_PARTITIONS", positive_int, "the job's --shuffle-partitions")
    setting("--master", "BENCH_SPARK_MASTER", str, "Spark master for the job")
    setting("--latency-rate", "BENCH_LATENCY_RATE", positive_int, "events/s while latency is measured")
    setting("--latency-s", "BENCH_LATENCY_S", float, "seconds of latency measurement")
    setting("--step-rates", "BENCH_STEP_RATES", str, "input rates tried at a 1 s trigger")
    setting("--step-s", "BENCH_STEP_S", float, "seconds per rate step")
    setting("--warmup-batches", "BENCH_WARMUP_BATCHES", positive_int, "batches a streaming job runs before it is measured")
    setting("--memory-s", "BENCH_MEMORY_S", float, "duration of the steady run watched for state and memory")
    setting("--memory-rate", "BENCH_MEMORY_RATE", positive_int, "events/s during the memory run")
    setting("--memory-window", "BENCH_MEMORY_WINDOW", str, "window and watermark during the memory run")
    p.add_setting("--results-dir", None, str, str(PROJECT_ROOT / "results"), help="where the JSON goes")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
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
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases = args.phases.split(",")
    results: dict = {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k != "results_dir"}, "phases": {}}
    work_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    broker = KafkaBroker(KAFKA_JARS, work_dir / "kafka", free_port(), free_port())
    print(f"starting a broker at {broker.bootstrap_servers} (data in {work_dir})", file=sys.stderr, flush=True)
    broker.start()
    bench = Bench(broker.bootstrap_servers, work_dir, args.partitions, args.master, args.shuffle_partitions)
    started = time.monotonic()
    try:
        steps = {
            "ceiling": lambda: run.phase_ceiling(bench, args.spark_events, args.payload_lines),
            "producer": lambda: run.phase_producer(bench, args.producer_events, args.profile_events),
            "spark": lambda: run.phase_spark(bench, args.max_offsets_per_trigger, profile=not args.smoke),
            "baseline": lambda: run.phase_baseline(bench, results.get("spark", {}).get("output_dir")),
            "stream": lambda: run.phase_stream(
                bench, args.latency_rate, args.latency_s, [int(r) for r in args.step_rates.split(",")], args.step_s, args.warmup_batches
            ),
            "memory": lambda: run.phase_memory(bench, args.memory_rate, args.memory_s, args.memory_window, args.warmup_batches),
        }
        for name in PHASES:
            if name in phases:
                if name in ("spark", "baseline") and "ceiling" not in phases:
                    raise SystemExit(f"error: the {name} phase reads the topic the ceiling phase fills; add ceiling to --phases")
                t0 = time.monotonic()
                print(f"[{time.monotonic() - started:6.0f}s] {name} ...", file=sys.stderr, flush=True)
                results[name] = steps[name]()
                results["phases"][name] = {"seconds": round(time.monotonic() - t0, 1), "loadavg_1min_after": round(os.getloadavg()[0], 2)}
    finally:
        broker.stop()
        results["machine"]["loadavg_at_end"] = os.getloadavg()
        table = report.rows(results)
        results["table"] = table
        out = Path(args.results_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"bench-{'smoke-' if args.smoke else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(results, indent=2, default=str))
        print(report.markdown(table))
        print(f"\nresults: {path}", file=sys.stderr)
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
