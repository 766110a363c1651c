"""The phases of one benchmark run, in order, on one broker. Each returns a plain dict
that goes into the results JSON as is."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from purchase_analytics.checkpoint import WINDOWS_DIR
from purchase_analytics.config import PROJECT_ROOT
from purchase_analytics.options import interval_seconds

from . import ceiling, latency, memory, producer, spark, systems, traffic
from .common import Bench, create_topic, end_offsets, write_payload_file

FILL_TOPIC = "bench-fill"  # the perf tools' own
TRAFFIC_TOPIC = "bench-traffic"  # what every system reads
LATENCY_DLQ_TOPIC = "bench-latency-dlq"


def phase_ceiling(bench: Bench, events: int, payload_lines: int) -> dict:
    payload = bench.path("payload.txt")
    record_bytes = write_payload_file(payload, payload_lines, bench.seed)
    create_topic(bench.bootstrap_servers, FILL_TOPIC, bench.partitions)
    produced = ceiling.perf_produce(bench, FILL_TOPIC, events, payload)
    consumed = ceiling.perf_consume(bench, FILL_TOPIC, events)
    return {"record_bytes": record_bytes, "producer": produced, "consumer": consumed}


def phase_producer(bench: Bench, events: int, profile_events: int) -> dict:
    results = {}
    for backend in producer.available_backends():
        topic = f"bench-producer-{backend}"
        create_topic(bench.bootstrap_servers, topic, bench.partitions)
        results[backend] = producer.measure(bench, topic, events, backend)
        if profile_events:
            results[backend]["profile"] = producer.profile(bench, topic, profile_events, backend, bench.work_dir)
    return results


def phase_traffic(bench: Bench, events: int, span_s: float, jitter_s: float, invalid_fraction: float, late_fraction: float) -> dict:
    """Fill the topic every system reads: a day of traffic (bench/traffic.py)."""
    rules = bench.rules
    plan = traffic.plan_traffic(
        events,
        span_s,
        jitter_s,
        invalid_fraction,
        late_fraction,
        bench.max_offsets_per_trigger,
        rules.window_s,
        rules.watermark_s,
        bench.partitions,
        rules.price_max,
        bench.seed,
    )
    create_topic(bench.bootstrap_servers, TRAFFIC_TOPIC, bench.partitions)
    filled = traffic.fill(bench.bootstrap_servers, TRAFFIC_TOPIC, plan)
    in_topic = sum(end_offsets(bench.bootstrap_servers, TRAFFIC_TOPIC).values())
    if in_topic != events:
        raise RuntimeError(f"the traffic topic holds {in_topic} messages, {events} were sent")
    return {**filled, "topic": TRAFFIC_TOPIC}


def phase_baseline(bench: Bench) -> dict:
    return attempt(lambda: systems.plain_consumer(bench, TRAFFIC_TOPIC))


def phase_spark(bench: Bench, before: str | None, profile: bool, together: bool = False) -> dict:
    """The job with its dead-letter query (as users run it), without it, grouped by furniture, `from_json` alone,
    and optionally the job of revision `before`, one after the other over the same topic
    (`together`: all at once, for --smoke). With `profile`, the default job runs once more
    under Java Flight Recorder: where its CPU goes, apart from the figures (the recording
    costs the job about a third more CPU)."""
    runs = {
        "default": lambda: systems.spark_default(bench, TRAFFIC_TOPIC),
        "no_dlq": lambda: systems.spark_no_dlq(bench, TRAFFIC_TOPIC),
        "group_by": lambda: systems.spark_group_by(bench, TRAFFIC_TOPIC),
        "from_json": lambda: systems.from_json_only(bench, TRAFFIC_TOPIC),
    }
    if before:
        runs["before"] = lambda: systems.spark_at_revision(bench, TRAFFIC_TOPIC, before)
    if together:
        systems.create_output_topics(bench, TRAFFIC_TOPIC)  # not by several jobs at once
    results = measure_all(runs, together)
    if profile:
        profiled = attempt(lambda: systems.spark_default(bench, TRAFFIC_TOPIC, name="spark-profiled", profile=True))
        results["profile"] = {k: profiled.get(k) for k in ("profile", "cpu_s_per_million", "events_per_s_busy", "error") if k in profiled}
    return results


def phase_peers(bench: Bench, together: bool = False) -> dict:
    names, missing = systems.peer_names()

    def run_peer(name: str) -> dict:
        return {"error": missing} if missing else systems.run_peer(bench, TRAFFIC_TOPIC, name)

    runs = {name: (lambda name=name: run_peer(name)) for name in names}
    return {name: {"label": names[name], **result} for name, result in measure_all(runs, together).items()}


def measure_all(runs: dict, together: bool) -> dict:
    """Each system's figures, or why there are none (a failing system does not stop the
    run); one after the other, or all at once."""
    if not together:
        return {name: attempt(measure) for name, measure in runs.items()}
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = {name: pool.submit(attempt, measure) for name, measure in runs.items()}
        return {name: future.result() for name, future in futures.items()}


def attempt(measure) -> dict:
    """One phase's or system's figures, or why there are none: a failure does not stop the run."""
    try:
        return measure()
    except (RuntimeError, OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        print(f"  failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", file=sys.stderr, flush=True)
        return {"error": str(exc)[-3000:]}


STEADY_TRIGGER = "1 second"  # the trigger of the rate steps and the memory run


def phase_stream(
    bench: Bench,
    latency_rate: int,
    latency_s: float,
    latency_trigger: str,
    step_rates: list[int],
    step_s: float,
    warmup: Warmup,
) -> dict:
    """Long-running jobs, each measured once warm: end-to-end latency at `latency_rate`
    with `latency_trigger`, then, at a 1-second trigger, input rate steps until one leaves a
    growing lag. When the latency trigger is that second too (the smoke run), the latency's
    job, warm by then, also takes the steps: one JVM fewer."""
    backend = producer.fastest_backend()
    topic, checkpoint, out_dir = "bench-latency", bench.path("ckpt-latency"), bench.path("out-latency")
    create_topic(bench.bootstrap_servers, topic, bench.partitions)
    create_topic(bench.bootstrap_servers, LATENCY_DLQ_TOPIC, 1)
    # As users run it: the dead-letter query beside the windows query.
    job = spark.StreamingJob(bench, topic, checkpoint, "--trigger", latency_trigger, "--output-dir", out_dir, dlq_topic=LATENCY_DLQ_TOPIC)
    lag = spark.LagProbe(bench, topic, checkpoint / WINDOWS_DIR)
    try:
        _warm_up(bench, job, topic, latency_rate, backend, warmup)
        with latency.OffsetLogRecorder(checkpoint / WINDOWS_DIR) as offset_log:
            start = end_offsets(bench.bootstrap_servers, topic)
            _run_producer(bench, topic, latency_rate, latency_s, backend)
            end = end_offsets(bench.bootstrap_servers, topic)
            _wait_caught_up(lag, timeout_s=60)
        records = latency.read_timestamps(bench.bootstrap_servers, topic, start, end)
        measured = latency.latencies_s(records, offset_log.planned, out_dir)
        values = measured.values_s
        result = {
            "backend": backend,
            "rate": latency_rate,
            "trigger": latency_trigger,
            "dead_letters": True,
            "warmup_s": warmup.seconds,
            "duration_s": latency_s,
            "events": len(values),
            "without_output": measured.without_output,
            "left_the_offset_log": measured.left_the_log,
            "p50_s": _round(latency.percentile(values, 50)),
            "p95_s": _round(latency.percentile(values, 95)),
            "p99_s": _round(latency.percentile(values, 99)),
            "max_s": _round(max(values, default=None)),
        }
        if interval_seconds(latency_trigger) == interval_seconds(STEADY_TRIGGER):
            return {"latency": result, **_rate_steps(bench, topic, lag, step_rates, step_s, backend, warmup)}
    finally:
        job.stop()
    topic, checkpoint = "bench-stream", bench.path("ckpt-stream")
    create_topic(bench.bootstrap_servers, topic, bench.partitions)
    job = spark.StreamingJob(bench, topic, checkpoint, "--trigger", STEADY_TRIGGER)
    lag = spark.LagProbe(bench, topic, checkpoint / WINDOWS_DIR)
    try:
        _warm_up(bench, job, topic, step_rates[0], backend, warmup)
        _wait_caught_up(lag, timeout_s=60)
        return {"latency": result, **_rate_steps(bench, topic, lag, step_rates, step_s, backend, warmup)}
    finally:
        job.stop()


def _rate_steps(bench: Bench, topic: str, lag: spark.LagProbe, rates: list[int], step_s: float, backend: str, warmup: Warmup) -> dict:
    """The rate steps on a warm job that has caught up, until one is not kept up with."""
    steps = []
    for rate in rates:
        step = _step(bench, topic, lag, rate, step_s, backend)
        steps.append(step)
        if not step["kept_up"]:
            break
        _wait_caught_up(lag, timeout_s=60)
    kept = [s["input_rate"] for s in steps if s["kept_up"]]
    return {
        "warmup_s": warmup.seconds,
        "steps": steps,
        "max_steady_rate": max(kept, default=0),
        "first_failing_rate": next((s["input_rate"] for s in steps if not s["kept_up"]), None),
    }


def _step(bench: Bench, topic: str, lag: spark.LagProbe, rate: int, step_s: float, backend: str) -> dict:
    """Send at `rate` for `step_s` and judge the job's lag (`lag_verdict`)."""
    t0, off0 = time.monotonic(), lag.total_end_offset()
    proc = subprocess.Popen(
        producer.producer_args(bench, topic, int(rate * step_s), rate, backend), stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT
    )
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        samples.append((time.monotonic() - t0, lag.lag()))
        time.sleep(0.5)
    elapsed, off1 = time.monotonic() - t0, lag.total_end_offset()
    input_rate = round((off1 - off0) / max(elapsed, 1e-9))
    slope, kept_up = lag_verdict(samples, rate)
    final_lag = samples[-1][1] if samples else 0
    return {
        "target_rate": rate,
        "input_rate": input_rate,
        "lag_slope_per_s": round(slope),
        "final_lag": final_lag,
        "max_lag": max((v for _, v in samples), default=0),
        "kept_up": kept_up,
    }


def lag_verdict(samples: list[tuple[float, int]], rate: int) -> tuple[float, bool]:
    """The slope of the lag over a step's last three quarters (after the ramp of its first
    seconds), and whether the job kept up: the lag does not grow (slope under 5% of the
    rate) and ends under 3 seconds of input. At a 1 s trigger the lag is a sawtooth that
    drops at every commit, and where its teeth fall moves the fitted slope: for a lag that
    does not grow at 10,000 ev/s (teeth of 0.8-1.4 s, any phase) by up to 597 ev/s over the
    second half, which crossed the 5% rule in two runs, and up to 408 over three quarters."""
    if not samples:
        return 0.0, True
    slope = spark.slope_per_s([s for s in samples if s[0] >= samples[-1][0] / 4])
    return slope, slope < 0.05 * rate and samples[-1][1] < 3 * rate


def phase_memory(bench: Bench, rate: int, duration_s: float, window: str, warmup: Warmup) -> dict:
    topic, checkpoint = "bench-memory", bench.path("ckpt-memory")
    create_topic(bench.bootstrap_servers, topic, bench.partitions)
    backend = producer.fastest_backend()
    job = spark.StreamingJob(bench, topic, checkpoint, "--trigger", STEADY_TRIGGER, "--window", window, "--watermark", window)
    try:
        _warm_up(bench, job, topic, rate, backend, Warmup(warmup.batches))  # memory is watched from the start
        t0 = time.monotonic()
        # A few late events keep the watermark honest: some arrive after their window closed and are dropped.
        _run_producer(bench, topic, rate, duration_s, backend, "--late-fraction", "0.02", "--max-lateness-s", "60")
    finally:
        job.stop()
    states = [b.state_rows for b in job.batches]
    return {
        "rate": rate,
        "duration_s": duration_s,
        "window": window,
        "watermark": window,
        "batches": len(job.batches),
        **memory.bounded(states),
        "state_rows_series": memory.state_series(job.batches, t0),
        "rss_mb_series": memory.rss_series(job.rss.series, t0),
        "peak_rss_mb": job.rss.peak_mb_by_name(),
    }


def _run_producer(bench: Bench, topic: str, rate: float, duration_s: float, backend: str, *extra: str) -> dict:
    summary_file = bench.path(f"producer-{topic}-summary.json")
    proc = subprocess.run(
        producer.producer_args(bench, topic, int(rate * duration_s), rate, backend, "--summary-file", summary_file, *extra),
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=duration_s * 3 + 120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"producer failed:\n{proc.stdout[-1000:]}\n{proc.stderr[-1000:]}")
    return producer.read_summary(summary_file)


@dataclass(frozen=True)
class Warmup:
    """How long a streaming job runs before it is measured: at least `batches` batches with
    events and `seconds` of input. On 2 cores the JIT compiles Spark's per-batch driver code
    for minutes; a long-running job is measured once that is done."""

    batches: int
    seconds: float = 0.0


def _warm_up(bench: Bench, job: spark.StreamingJob, topic: str, rate: int, backend: str, warmup: Warmup) -> None:
    """Send at `rate` until the job is warm: JVM start, code generation and JIT compilation
    happen here, outside the figures. One second of input waits for the JVM to start (a
    sender at `rate` would send, and pay for, every second of that), then `rate` flows
    until the job has run `warmup.batches` batches with input and `warmup.seconds` have passed."""
    started = time.monotonic()
    _run_producer(bench, topic, rate, 1.0, backend)
    job.wait_for_batches(1, timeout_s=300)
    if warmup.batches > 1 or warmup.seconds > time.monotonic() - started:
        sender = subprocess.Popen(producer.producer_args(bench, topic, 0, rate, backend), stdout=subprocess.DEVNULL, cwd=PROJECT_ROOT)
        try:
            job.wait_for_batches(warmup.batches, timeout_s=300)
            if warmup.seconds > 1:
                print(f"  warming the job up at {rate:,} events/s for {warmup.seconds:g}s", file=sys.stderr, flush=True)
            while time.monotonic() - started < warmup.seconds:
                if job.proc.poll() is not None:
                    raise RuntimeError("the streaming job ended while warming up:\n" + "".join(job.stderr_tail))
                time.sleep(0.5)
        finally:
            sender.terminate()
            sender.wait()
    time.sleep(2)


def _wait_caught_up(lag: spark.LagProbe, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while lag.lag() > 0 and time.monotonic() < deadline:
        time.sleep(0.5)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
