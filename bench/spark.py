"""The Spark job through its real entry point: --available-now over the pre-filled traffic
topic, and as a long-running 1-second-trigger job whose lag we watch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from purchase_analytics.config import PROJECT_ROOT
from purchase_analytics.sinks import read_json_lines_totals

from . import jfr
from .common import AGGREGATOR, Bench, Finished, TreeSampler, checkpoint_offsets, end_offsets, python_cmd, run_checked, system_result


@dataclass(frozen=True)
class Batch:
    """One record of the job's structured progress (--progress-file, purchase_analytics.progress)."""

    seen_s: float  # monotonic time the record was read
    batch_id: int
    messages: int
    state_rows: int
    rows_per_s: float
    rejected: int = 0
    dropped_late: int = 0
    started_at_s: float | None = None  # epoch seconds the batch started (Spark's progress timestamp)

    @classmethod
    def from_record(cls, line: str, seen_s: float = 0.0) -> Batch:
        r = json.loads(line)
        started = r.get("timestamp")
        return cls(
            seen_s,
            r["batch_id"],
            r["messages"],
            r["state_rows"],
            r["processed_rows_per_s"],
            r.get("rejected", 0),
            r.get("dropped_late", 0),
            datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() if started else None,
        )


def read_batches(progress_file: Path) -> list[Batch]:
    if not progress_file.exists():
        return []
    return [Batch.from_record(line) for line in progress_file.read_text().splitlines() if line.strip()]


def job_args(bench: Bench, topic: str, checkpoint: Path, *extra: object, dlq_topic: str = "", aggregator: Path = AGGREGATOR) -> list[str]:
    return spark_args(python_cmd(aggregator), bench, topic, checkpoint, "--dlq-topic", dlq_topic, "--no-console", *extra)


def spark_args(program: list[str], bench: Bench, topic: str, checkpoint: Path, *extra: object) -> list[str]:
    """A Spark program's command line: the job's, or bench/from_json_job.py's (the job's own options)."""
    options = ("--bootstrap-servers", bench.bootstrap_servers, "--topic", topic, "--master", bench.master, "--checkpoint", checkpoint)
    return [*program, *map(str, options), "--shuffle-partitions", str(bench.shuffle_partitions), *map(str, extra)]


def available_now(
    bench: Bench,
    topic: str,
    name: str,
    *,
    program: list[str] | None = None,
    dlq_topic: str = "",
    aggregator: Path = AGGREGATOR,
    env: dict | None = None,
    profile: bool = False,
    extra: tuple[str, ...] = (),
) -> dict:
    """The job's command line with --available-now (or another `program` that reads what
    the topic holds, then stops) over the whole topic, in micro-batches of
    max-offsets-per-trigger: wall time, Spark's own batch durations, CPU and memory of the
    process tree, and the windows it wrote. With `profile`, Java Flight Recorder samples the
    JVM during the run, which costs it CPU: a profiled run is not a figure."""
    checkpoint, out_dir, progress = bench.path(f"ckpt-{name}"), bench.path(f"out-{name}"), bench.path(f"progress-{name}.jsonl")
    recording = bench.path(f"{name}.jfr")
    batches = ("--max-offsets-per-trigger", bench.max_offsets_per_trigger, "--output-dir", out_dir, "--progress-file", progress, *extra)
    if program is None:
        cmd = job_args(bench, topic, checkpoint, "--available-now", *batches, dlq_topic=dlq_topic, aggregator=aggregator)
    else:
        cmd = spark_args(program, bench, topic, checkpoint, "--available-now", "--dlq-topic", "", "--no-console", *batches)
    if profile:
        env = {**(env or {}), "JAVA_TOOL_OPTIONS": f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {jfr.java_options(recording)}".strip()}
    run = run_checked(cmd, timeout_s=3600, what=f"Spark job ({name})", env=env)
    result = batches_result(run, read_batches(progress), out_dir)
    if profile:
        result["profile"] = jfr.summarize(recording)
    return result


def batches_result(run: Finished, batches: list[Batch], out_dir: Path) -> dict:
    """A Spark run over the traffic topic as a system result, from its progress records."""
    batches = [b for b in batches if b.messages]
    if not batches:
        raise RuntimeError(f"the Spark job reported no batches:\n{run.stderr[-2000:]}")
    first_batch = batches[0].started_at_s
    counts = {
        "messages": sum(b.messages for b in batches),
        "rejected": sum(b.rejected for b in batches),
        "dropped_late": sum(b.dropped_late for b in batches),
    }
    return {
        **system_result(run, counts, round(first_batch - run.started_at_s, 2) if first_batch else None, read_windows(out_dir)),
        "events_per_s_busy": weighted_rate(batches),
        "events_per_s_busy_after_first_batch": weighted_rate(batches[1:]) if len(batches) > 1 else None,
        "batches": [{"messages": b.messages, "rows_per_s": b.rows_per_s} for b in batches],
    }


def read_windows(out_dir: Path) -> dict[int, tuple[int, int]]:
    """The job's final windows from its JSON-lines output: {start epoch s: (total, orders)},
    a window's groups (--group-by) summed."""
    windows: dict[int, tuple[int, int]] = {}
    for key, (total, orders) in read_json_lines_totals(out_dir).items():
        start = key if isinstance(key, str) else key[0]
        start_s = int(datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())
        before = windows.get(start_s, (0, 0))
        windows[start_s] = (before[0] + total, before[1] + orders)
    return windows


def weighted_rate(batches: list[Batch]) -> float:
    """All rows over all batch durations (a batch's duration is rows / its rate)."""
    busy_s = sum(b.messages / b.rows_per_s for b in batches if b.rows_per_s)
    return round(sum(b.messages for b in batches) / busy_s) if busy_s else 0.0


class StreamingJob:
    """The aggregator as a background process; its progress records and memory are recorded as they come."""

    def __init__(self, bench: Bench, topic: str, checkpoint: Path, *extra: object, dlq_topic: str = ""):
        self.checkpoint = checkpoint
        self.progress_file = checkpoint.with_name(checkpoint.name + "-progress.jsonl")
        self.progress_file.unlink(missing_ok=True)
        self.batches: list[Batch] = []
        self.stderr_tail: list[str] = []
        self.proc = subprocess.Popen(
            job_args(bench, topic, checkpoint, "--progress-file", self.progress_file, *extra, dlq_topic=dlq_topic),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        self.rss = TreeSampler(self.proc.pid, interval_s=1.0).__enter__()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._follower = threading.Thread(target=self._follow, daemon=True)
        self._follower.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line])[-40:]

    def _follow(self) -> None:
        """Tail the progress file: each record as it is written, with the time it was seen."""
        offset = 0
        while self.proc.poll() is None or offset < (self.progress_file.stat().st_size if self.progress_file.exists() else 0):
            if self.progress_file.exists():
                with open(self.progress_file) as f:
                    f.seek(offset)
                    for line in iter(f.readline, ""):
                        if not line.endswith("\n"):
                            break  # a record still being written
                        offset += len(line.encode())
                        self.batches.append(Batch.from_record(line, time.monotonic()))
            time.sleep(0.1)

    def wait_for_batches(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len([b for b in self.batches if b.messages]) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                cause = next((line.strip() for line in reversed(self.stderr_tail) if line.startswith("error:")), "")
                raise RuntimeError(f"the streaming job did not start processing: {cause}\n" + "".join(self.stderr_tail))
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
        self._follower.join(timeout=10)
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
