"""The Spark job through its real entry point: rows/s with --available-now over a
pre-filled topic, and as a long-running 1-second-trigger job whose lag we watch."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from purchase_analytics.config import PROJECT_ROOT

from . import jfr
from .common import AGGREGATOR, Bench, RssSampler, checkpoint_offsets, end_offsets, python_cmd, run_checked

# The job's per-batch progress line (purchase_analytics.job.JobSummary.record).
BATCH_LINE = re.compile(r"batch (\d+): (\d+) messages.*?(\d+) state rows.*?([\d,.]+) rows/s")


@dataclass(frozen=True)
class Batch:
    seen_s: float  # monotonic time the line was read
    batch_id: int
    messages: int
    state_rows: int
    rows_per_s: float


def parse_batches(text: str, seen_s: float = 0.0) -> list[Batch]:
    return [Batch(seen_s, int(m[1]), int(m[2]), int(m[3]), float(m[4].replace(",", ""))) for m in BATCH_LINE.finditer(text)]


def job_args(bench: Bench, topic: str, checkpoint: Path, *extra: object) -> list[str]:
    return python_cmd(
        AGGREGATOR,
        "--bootstrap-servers",
        bench.bootstrap_servers,
        "--topic",
        topic,
        "--master",
        bench.master,
        "--checkpoint",
        checkpoint,
        "--shuffle-partitions",
        bench.shuffle_partitions,
        "--dlq-topic",
        "",
        "--no-console",
        *extra,
    )


def available_now(bench: Bench, topic: str, max_offsets_per_trigger: int, profile: bool) -> dict:
    """processedRowsPerSecond over the whole topic, as Spark reports it per micro-batch.
    The first batch also pays for JVM warm-up and code generation, so it is shown apart.
    With `profile`, Java Flight Recorder samples the JVM during the run (about 1% overhead)."""
    checkpoint, out_dir, recording = bench.path("ckpt-available-now"), bench.path("out-available-now"), bench.path("spark.jfr")
    _, err, rss = run_checked(
        job_args(
            bench, topic, checkpoint, "--available-now", "--max-offsets-per-trigger", max_offsets_per_trigger, "--output-dir", out_dir
        ),
        timeout_s=3600,
        what="Spark job (--available-now)",
        env={"JAVA_TOOL_OPTIONS": jfr.java_options(recording)} if profile else None,
    )
    batches = [b for b in parse_batches(err) if b.messages]
    if not batches:
        raise RuntimeError(f"the Spark job reported no batches:\n{err[-2000:]}")
    return {
        "events": sum(b.messages for b in batches),
        "rows_per_s": weighted_rate(batches),
        "rows_per_s_after_first_batch": weighted_rate(batches[1:]) if len(batches) > 1 else None,
        "batches": [{"messages": b.messages, "rows_per_s": b.rows_per_s} for b in batches],
        "peak_rss_mb": rss.peak_mb_by_name(),
        "output_dir": str(out_dir),
        "profile": jfr.summarize(recording) if profile else None,
    }


def weighted_rate(batches: list[Batch]) -> float:
    """All rows over all batch durations (a batch's duration is rows / its rate)."""
    busy_s = sum(b.messages / b.rows_per_s for b in batches if b.rows_per_s)
    return round(sum(b.messages for b in batches) / busy_s) if busy_s else 0.0


class StreamingJob:
    """The aggregator as a background process; its batch lines and memory are recorded as they come."""

    def __init__(self, bench: Bench, topic: str, checkpoint: Path, *extra: object):
        self.checkpoint = checkpoint
        self.batches: list[Batch] = []
        self.stderr_tail: list[str] = []
        self.proc = subprocess.Popen(
            job_args(bench, topic, checkpoint, *extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        self.rss = RssSampler(self.proc.pid, interval_s=1.0).__enter__()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.batches.extend(parse_batches(line, time.monotonic()))
            self.stderr_tail = (self.stderr_tail + [line])[-40:]

    def wait_for_batches(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len([b for b in self.batches if b.messages]) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the streaming job did not start processing:\n" + "".join(self.stderr_tail))
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM (the job stops its queries and prints its summary); SIGKILL to its own group after a minute."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(timeout=10)
        self.rss.__exit__()


class LagProbe:
    """Records in the topic not yet in a committed micro-batch of the job."""

    def __init__(self, bench: Bench, topic: str, query_checkpoint: Path):
        self.bench, self.topic, self.query_checkpoint = bench, topic, query_checkpoint

    def total_end_offset(self) -> int:
        return sum(end_offsets(self.bench.bootstrap_servers, self.topic).values())

    def committed_offset(self) -> int:
        batches = checkpoint_offsets(self.query_checkpoint)
        return sum(batches[max(batches)].values()) if batches else 0

    def lag(self) -> int:
        return self.total_end_offset() - self.committed_offset()


def slope_per_s(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt, my = sum(t for t, _ in points) / n, sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / var if var else 0.0
