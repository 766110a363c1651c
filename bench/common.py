"""What every phase shares: the broker, paths and rules, subprocess runs with memory and CPU
sampling, topic offsets and Spark checkpoint offsets (for lag), and the payload file of real events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from purchase_analytics.config import PROJECT_ROOT
from purchase_analytics.kafka_client import KafkaSecurity
from purchase_analytics.producer import EventGenerator

PRODUCER = PROJECT_ROOT / "scripts" / "event_producer.py"
AGGREGATOR = PROJECT_ROOT / "spark-scripts" / "purchase-aggregator.py"


@dataclass(frozen=True)
class Rules:
    """What every system over the traffic topic applies: the job's windows, watermark and
    validation limits, read from the settings the job itself reads (.env, environment)."""

    window_s: int
    watermark_s: int
    price_max: int
    max_future_s: int

    def as_dict(self) -> dict[str, int]:
        return {"window_s": self.window_s, "watermark_s": self.watermark_s, "price_max": self.price_max, "max_future_s": self.max_future_s}


@dataclass(frozen=True)
class Bench:
    """Where this run's broker listens, where its files go, and the job's shape."""

    bootstrap_servers: str
    work_dir: Path  # temporary: checkpoints, payload file, sink output
    partitions: int
    master: str
    shuffle_partitions: int
    max_offsets_per_trigger: int
    rules: Rules
    seed: int = 6

    def path(self, name: str) -> Path:
        return self.work_dir / name


def mb(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


_Periodic = TypeVar("_Periodic", bound="Periodic")


class Periodic:
    """Calls `sample()` at once and then every `interval_s` on a daemon thread, from
    `__enter__` (a `with`) until `__exit__`."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def __enter__(self: _Periodic) -> _Periodic:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval_s):
                return

    def sample(self) -> None:
        raise NotImplementedError


class TreeSampler(Periodic):
    """Samples a process tree (the process, its children, grandchildren, ...) from /proc
    every `interval_s`: per process the kernel's own peak RSS (VmHWM), so a short spike
    between samples is still seen, the current RSS, and its CPU time (utime + stime of all
    its threads). A process's last sample before it exits is what counts for it, so the CPU
    it spends after that sample (at most `interval_s` per process) is missed."""

    def __init__(self, pid: int, interval_s: float = 0.25):
        super().__init__(interval_s)
        self.pid = pid
        self.peak_kb: dict[int, tuple[str, int]] = {}  # pid -> (name, VmHWM kB)
        self.cpu_ticks: dict[tuple[int, int], int] = {}  # (pid, start time) -> utime + stime, clock ticks
        self.series: list[tuple[float, int]] = []  # (monotonic time, total RSS kB)

    def sample(self) -> None:
        total = 0
        for pid, (start, cpu) in _tree(self.pid).items():
            self.cpu_ticks[(pid, start)] = cpu
            status = _status(pid)
            if status and (status[0] == "java" or status[0].startswith("python")):
                name, hwm, rss = status
                if hwm > self.peak_kb.get(pid, ("", 0))[1]:
                    self.peak_kb[pid] = (name, hwm)
                total += rss
        self.series.append((time.monotonic(), total))

    @property
    def cpu_s(self) -> float:
        """CPU seconds of the whole tree, user and system."""
        return round(sum(self.cpu_ticks.values()) / CLOCK_TICKS_PER_S, 2)

    def peak_mb_by_name(self) -> dict[str, float]:
        """Peak RSS of the largest java and python process. Other names are short-lived
        processes (spark-submit's shell, a JVM child between fork and exec, which briefly
        shows its parent's pages) and are left out."""
        peaks: dict[str, int] = {}
        for name, hwm in self.peak_kb.values():
            name = "python" if name.startswith("python") else name
            if name in ("java", "python"):
                peaks[name] = max(peaks.get(name, 0), hwm)
        return {name: mb(kb * 1024) for name, kb in peaks.items()}


def _status(pid: int) -> tuple[str, int, int] | None:
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return fields["Name"].strip(), int(fields.get("VmHWM", "0 kB").split()[0]), int(fields.get("VmRSS", "0 kB").split()[0])
    except (OSError, KeyError, ValueError):
        return None


def _tree(root: int) -> dict[int, tuple[int, int]]:
    """pid -> (start time, utime + stime in clock ticks) for `root` and all its descendants,
    from one pass over /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                ppid, utime, stime, start = int(fields[1]), int(fields[11]), int(fields[12]), int(fields[19])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
            stats[int(entry.name)] = (start, utime + stime)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found[pid] = stats[pid]
        todo.extend(children.get(pid, []))
    return found


def python_cmd(script: Path, *args: object) -> list[str]:
    return [sys.executable, str(script), *map(str, args)]


@dataclass(frozen=True)
class Finished:
    """A process run to completion: its output, its tree's memory and CPU, and its wall time."""

    stdout: str
    stderr: str
    sampler: TreeSampler
    started_at_s: float  # epoch seconds, just before the process was started
    wall_s: float  # from start to exit


def run_checked(cmd: list[str], timeout_s: float, what: str, env: dict | None = None) -> Finished:
    """Run to completion while sampling its process tree; RuntimeError when it fails."""
    started_at, t0 = time.time(), time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    with TreeSampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise RuntimeError(f"{what} took longer than {timeout_s:.0f}s:\n{err[-2000:]}") from None
        except BaseException:  # Ctrl-C: its own session does not get the SIGINT, so nothing would stop it
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        wall_s = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited {proc.returncode}:\n{(err or out)[-2000:]}")
    return Finished(out, err, sampler, started_at, round(wall_s, 2))


def system_result(run: Finished, counts: dict, startup_s: float | None, windows: dict[int, tuple[int, int]]) -> dict:
    """One system's run over the traffic topic, in the form all of them are compared in:
    rates from process start to exit (wall) and from the start of processing to exit (net
    of start-up), CPU seconds of the process tree per million events, peak RSS, windows."""
    messages, rejected = counts["messages"], counts.get("rejected")
    cpu_s = run.sampler.cpu_s
    return {
        "messages": messages,
        "valid": None if rejected is None else messages - rejected,
        "rejected": rejected,
        "dropped_late": counts.get("dropped_late"),
        "wall_s": run.wall_s,
        "startup_s": startup_s,
        "events_per_s_wall": per_s(messages, run.wall_s),
        "events_per_s_net": per_s(messages, None if startup_s is None else run.wall_s - startup_s),
        "cpu_s": cpu_s,
        "cpu_s_per_million": round(cpu_s * 1e6 / messages, 2) if messages else None,
        "peak_rss_mb": run.sampler.peak_mb_by_name(),
        "windows": windows,
    }


def per_s(count: int, seconds: float | None) -> int | None:
    return round(count / seconds) if seconds and seconds > 0 else None


def write_payload_file(path: Path, count: int, seed: int) -> int:
    """Real events, one per line, for Kafka's perf producer (`--payload-file`); returns the
    average record size in bytes. A share are up to 5 minutes late, as in the tests."""
    generator = EventGenerator(seed=seed, late_fraction=0.2, max_lateness_s=300)
    payloads = [generator.next_payload() for _ in range(count)]
    path.write_bytes(b"\n".join(payloads) + b"\n")
    return round(sum(map(len, payloads)) / count)


def end_offsets(bootstrap_servers: str, topic: str, security: KafkaSecurity | None = None) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers.split(","), **(security or KafkaSecurity()).kafka_python_kwargs())
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: off for tp, off in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def checkpoint_offsets(query_checkpoint: Path, committed_only: bool = True, skip: Container[int] = ()) -> dict[int, dict[int, int]]:
    """batch id -> {partition: end offset} from a query's checkpoint (`offsets/<id>` is
    written when a batch is planned, `commits/<id>` when its sink has finished), but for
    the batch ids in `skip`."""
    result = {}
    offsets_dir = query_checkpoint / "offsets"
    if not offsets_dir.is_dir():
        return result
    for f in offsets_dir.iterdir():
        if not f.name.isdigit() or int(f.name) in skip or (committed_only and not (query_checkpoint / "commits" / f.name).exists()):
            continue
        try:
            source = json.loads(f.read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            continue  # being written
        for topic_offsets in source.values():
            result[int(f.name)] = {int(p): int(o) for p, o in topic_offsets.items()}
    return result


def create_topic(bootstrap_servers: str, topic: str, partitions: int) -> None:
    from purchase_analytics.admin import create_topics

    create_topics(bootstrap_servers, {topic: partitions})


def process_age_s() -> float:
    """Seconds since this process was started (the kernel's start time, so interpreter
    start-up and imports count): what a program over the traffic topic reports as its
    start-up when it reads its first record."""
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # since boot
    return round(float(Path("/proc/uptime").read_text().split()[0]) - start_ticks / CLOCK_TICKS_PER_S, 2)
