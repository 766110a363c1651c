"""What every phase shares: the broker and paths, subprocess runs with peak-RSS sampling,
topic offsets and Spark checkpoint offsets (for lag), and the payload file of real events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from purchase_analytics.config import PROJECT_ROOT
from purchase_analytics.producer import EventGenerator

PRODUCER = PROJECT_ROOT / "scripts" / "event_producer.py"
AGGREGATOR = PROJECT_ROOT / "spark-scripts" / "purchase-aggregator.py"
KAFKA_JARS = PROJECT_ROOT / ".cache" / "jars" / "kafka"


@dataclass(frozen=True)
class Bench:
    """Where this run's broker listens and where its files go."""

    bootstrap_servers: str
    work_dir: Path  # temporary: checkpoints, payload file, sink output
    partitions: int
    master: str
    shuffle_partitions: int
    seed: int = 6

    def path(self, name: str) -> Path:
        return self.work_dir / name


def mb(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


class RssSampler:
    """Samples a process tree every `interval_s`: the kernel's own peak (VmHWM) per
    process, so a short spike between samples is still seen, and the current RSS."""

    def __init__(self, pid: int, interval_s: float = 0.5):
        self.pid = pid
        self.interval_s = interval_s
        self.peak_kb: dict[int, tuple[str, int]] = {}  # pid -> (name, VmHWM kB)
        self.series: list[tuple[float, int]] = []  # (monotonic time, total RSS kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
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
        total = 0
        for pid in _tree(self.pid):
            status = _status(pid)
            if status and (status[0] == "java" or status[0].startswith("python")):
                name, hwm, rss = status
                if hwm > self.peak_kb.get(pid, ("", 0))[1]:
                    self.peak_kb[pid] = (name, hwm)
                total += rss
        self.series.append((time.monotonic(), total))

    def peak_mb_by_name(self) -> dict[str, float]:
        """Peak RSS of the largest java and python process. Other names are short-lived
        helpers (spark-submit's shell, a JVM child between fork and exec, which briefly
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


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def python_cmd(script: Path, *args: object) -> list[str]:
    return [sys.executable, str(script), *map(str, args)]


def run_checked(cmd: list[str], timeout_s: float, what: str, env: dict | None = None) -> tuple[str, str, RssSampler]:
    """Run to completion while sampling its memory; stdout, stderr and the sampler."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    with RssSampler(proc.pid) as rss:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"{what} took longer than {timeout_s:.0f}s:\n{err[-2000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited {proc.returncode}:\n{(err or out)[-2000:]}")
    return out, err, rss


def write_payload_file(path: Path, count: int, seed: int) -> int:
    """Real events, one per line, for Kafka's perf producer (`--payload-file`); returns the
    average record size in bytes. A share are up to 5 minutes late, as in the tests."""
    generator = EventGenerator(seed=seed, late_fraction=0.2, max_lateness_s=300)
    payloads = [generator.next_payload() for _ in range(count)]
    path.write_bytes(b"\n".join(payloads) + b"\n")
    return round(sum(map(len, payloads)) / count)


def end_offsets(bootstrap_servers: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: off for tp, off in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def checkpoint_offsets(query_checkpoint: Path, committed_only: bool = True) -> dict[int, dict[int, int]]:
    """batch id -> {partition: end offset} from a query's checkpoint (`offsets/<id>` is
    written when a batch is planned, `commits/<id>` when its sink has finished)."""
    result = {}
    offsets_dir = query_checkpoint / "offsets"
    if not offsets_dir.is_dir():
        return result
    for f in offsets_dir.iterdir():
        if not f.name.isdigit() or (committed_only and not (query_checkpoint / "commits" / f.name).exists()):
            continue
        try:
            source = json.loads(f.read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            continue  # being written
        for topic_offsets in source.values():
            result[int(f.name)] = {int(p): int(o) for p, o in topic_offsets.items()}
    return result


def create_topic(bootstrap_servers: str, topic: str, partitions: int) -> None:
    from purchase_analytics.runtime.kafka_broker import create_topics

    create_topics(bootstrap_servers, {topic: partitions})
