"""Our producer (scripts/event_producer.py) at full speed, per backend, with its peak RSS;
optionally a py-spy profile of where its time goes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .common import PRODUCER, Bench, python_cmd, run_checked


def available_backends() -> list[str]:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return ["kafka-python"]
    return ["kafka-python", "confluent"]


def fastest_backend() -> str:
    return available_backends()[-1]


def producer_args(bench: Bench, topic: str, count: int, rate: float, backend: str, *extra: object) -> list[str]:
    return python_cmd(
        PRODUCER,
        "--bootstrap-servers",
        bench.bootstrap_servers,
        "--topic",
        topic,
        "--count",
        count,
        "--rate",
        rate,
        "--seed",
        bench.seed,
        "--backend",
        backend,
        "--progress-interval-s",
        3600,
        *extra,
    )


def read_summary(summary_file: Path) -> dict:
    """The producer's --summary-file: sent, acked, failed, pending, elapsed_s, events_per_s, and
    its own peak RSS (getrusage: no sampling race, however short the run)."""
    if not summary_file.exists():
        raise RuntimeError(f"the producer wrote no summary file ({summary_file})")
    summary = json.loads(summary_file.read_text())
    return {k: summary[k] for k in ("sent", "acked", "failed", "pending", "elapsed_s", "events_per_s", "peak_rss_mb")}


def measure(bench: Bench, topic: str, count: int, backend: str) -> dict:
    summary_file = bench.path(f"producer-{backend}-summary.json")
    run_checked(producer_args(bench, topic, count, 0, backend, "--summary-file", summary_file), timeout_s=900, what=f"producer ({backend})")
    return {**read_summary(summary_file), "backend": backend}


def profile(bench: Bench, topic: str, count: int, backend: str, out_dir: Path) -> dict | None:
    """py-spy's flat top functions over a run (sampling, so the run keeps its speed)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return None
    raw = out_dir / f"producer-{backend}.pyspy.txt"
    cmd = [
        py_spy,
        "record",
        "--threads",
        "--format",
        "raw",
        "--rate",
        "200",
        "--output",
        str(raw),
        "--",
        *producer_args(bench, topic, count, 0, backend),
    ]
    if subprocess.run(cmd, capture_output=True, text=True).returncode != 0 or not raw.exists():
        return None
    return {"file": str(raw), "top_self": top_frames(raw, own=True), "top_total": top_frames(raw, own=False)}


def top_frames(raw_file: Path, own: bool, limit: int = 8) -> list[tuple[str, float]]:
    """From py-spy's collapsed stacks: share of samples per function, by self time
    (`own`, the leaf frame) or inclusive time (anywhere on the stack)."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw_file.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";")]
        total += int(n)
        for frame in [frames[-1]] if own else set(frames):
            counts[frame] = counts.get(frame, 0) + int(n)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return [(name, round(100 * n / max(total, 1), 1)) for name, n in ranked if not name.startswith(("process ", "thread "))][:limit]


def _short(frame: str) -> str:
    """`send (kafka/producer/kafka.py:864)` -> `send (kafka/producer/kafka.py)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "purchase_analytics/", "scripts/"):
        if marker in where:
            where = where[where.index(marker) + (len(marker) if marker == "site-packages/" else 0) :]
    return f"{name} ({where})" if where else name
