"""Every system over the same traffic topic, measured the same way (bench.common.system_result):
the plain consumer, the Spark job with and without its dead-letter query and grouped by
furniture, `from_json` alone,
optionally the job of another git revision, and the peers (bench/peers.py, when present).
Their window totals are compared with the plain consumer's."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from purchase_analytics.config import PROJECT_ROOT

from . import spark
from .common import Bench, create_topic, end_offsets, run_checked, system_result

DLQ_TOPIC = "bench-traffic-dlq"
# Shown when bench/peers.py is missing; its PEERS names them otherwise.
PEER_LABELS = {"quix": "Quix Streams", "flink": "Flink SQL"}
PEER_TIMEOUT_S = 1800


def plain_consumer(bench: Bench, topic: str) -> dict:
    """bench/baseline.py: one Python process, kafka-python and json.loads, in rounds no
    larger than the job's micro-batches."""
    rules = bench.rules
    cmd = [
        sys.executable,
        "-m",
        "bench.baseline",
        "--bootstrap-servers",
        bench.bootstrap_servers,
        "--topic",
        topic,
        "--window-s",
        str(rules.window_s),
        "--watermark-s",
        str(rules.watermark_s),
        "--price-max",
        str(rules.price_max),
        "--max-future-s",
        str(rules.max_future_s),
        "--round-records",
        str(min(bench.max_offsets_per_trigger, 100_000)),
    ]
    return program_result(run_checked(cmd, timeout_s=3600, what="plain consumer (bench.baseline)"))


def program_result(run) -> dict:
    """A program that prints one JSON object (the baseline's shape) as a system result."""
    printed = next((line for line in reversed(run.stdout.splitlines()) if line.startswith("{")), None)
    if printed is None:
        raise RuntimeError(f"printed no JSON result:\n{run.stdout[-1000:]}\n{run.stderr[-1000:]}")
    out = json.loads(printed)
    counts = {
        "messages": out.get("messages", out.get("events")),
        "rejected": out.get("rejected"),
        "dropped_late": out.get("dropped_late"),
    }
    startup_s = out.get("first_record_s", out.get("submit_s"))
    windows = {int(k): tuple(v) for k, v in out["windows"].items()}
    extra = {k: v for k, v in out.items() if k not in ("windows", "messages", "events", "valid", "rejected", "dropped_late")}
    return {**system_result(run, counts, startup_s, windows), "reported": extra}


def spark_default(bench: Bench, topic: str, name: str = "spark-default", **kwargs) -> dict:
    """The job as users run it, dead-letter query on; also how many dead letters it wrote."""
    dlq = f"{DLQ_TOPIC}-{name}"
    create_topic(bench.bootstrap_servers, dlq, 1)
    result = spark.available_now(bench, topic, name, dlq_topic=dlq, **kwargs)
    result["dead_letters"] = sum(end_offsets(bench.bootstrap_servers, dlq).values())
    return result


def create_output_topics(bench: Bench, topic: str) -> None:
    """The topics the job creates at its start (results, metrics), created before jobs run side by side."""
    from purchase_analytics.admin import ensure_output_topics
    from purchase_analytics.config import parse_aggregator_config

    ensure_output_topics(parse_aggregator_config(["--bootstrap-servers", bench.bootstrap_servers, "--topic", topic]))


def spark_no_dlq(bench: Bench, topic: str) -> dict:
    return spark.available_now(bench, topic, "spark-no-dlq", dlq_topic="")


def spark_group_by(bench: Bench, topic: str) -> dict:
    """The job with each window split by furniture type (its windows summed back for the comparison)."""
    return spark.available_now(bench, topic, "spark-group-by", dlq_topic="", extra=("--group-by", "furniture"))


def from_json_only(bench: Bench, topic: str) -> dict:
    """bench/from_json_job.py: the same source, session, windows and sink, no validation."""
    result = spark.available_now(bench, topic, "from-json", program=[sys.executable, "-m", "bench.from_json_job"])
    result["rejected"] = result["valid"] = result["dropped_late"] = None  # no rules: nothing is rejected or counted as dropped
    return result


def check_revision(rev: str) -> str:
    """The commit `rev` names, or SystemExit with one line."""
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    if proc.returncode != 0:
        raise SystemExit(f"error: --before {rev}: not a commit of this repository")
    return proc.stdout.strip()


def spark_at_revision(bench: Bench, topic: str, rev: str) -> dict:
    """The default job with the aggregator of another revision: a temporary detached git
    worktree of `rev` (removed afterwards), run with this .venv, the same jars and topic."""
    commit = check_revision(rev)
    tree = Path(tempfile.mkdtemp(prefix="bench-before-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], check=True, capture_output=True, cwd=PROJECT_ROOT)
    try:
        (tree / ".cache").mkdir(exist_ok=True)
        (tree / ".cache" / "jars").symlink_to(PROJECT_ROOT / ".cache" / "jars")
        # The revision's own package first (the editable install points at this tree).
        env = {"PYTHONPATH": str(tree)}
        result = spark_default(bench, topic, "spark-before", aggregator=tree / "spark-scripts" / "purchase-aggregator.py", env=env)
        return {**result, "revision": rev, "commit": commit}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], capture_output=True, cwd=PROJECT_ROOT)
        shutil.rmtree(tree.parent, ignore_errors=True)


def peer_names() -> tuple[dict[str, str], str | None]:
    """{name: label} of the peers, and why none can run (bench/peers.py missing)."""
    try:
        peers = importlib.import_module("bench.peers")
    except ModuleNotFoundError as exc:
        missing = "bench/peers.py is missing" if exc.name == "bench.peers" else f"{exc.name} is missing"
        return dict(PEER_LABELS), f"not installed ({missing})"
    except ImportError as exc:
        return dict(PEER_LABELS), f"not installed ({exc})"
    return {name: peer_label(name) for name in peers.PEERS}, None


def peer_label(name: str) -> str:
    return next((label for key, label in PEER_LABELS.items() if key in name.lower()), name)


def run_peer(bench: Bench, topic: str, name: str) -> dict:
    """One peer program over the traffic topic (its command from bench.peers)."""
    from . import peers

    problem = peers.available(name)
    if problem:
        return {"error": f"not installed: {problem}"}
    cmd = peers.peer_command(name, bench.bootstrap_servers, topic, **bench.rules.as_dict())
    return program_result(run_checked(cmd, timeout_s=PEER_TIMEOUT_S, what=f"peer {name}"))


def compare_totals(systems: dict[str, dict], reference: dict | None) -> None:
    """Each system's windows against the plain consumer's: `windows_compared` (the windows
    either of them has), `same_totals`, and the first differences. The windows themselves
    are dropped from every result but the plain consumer's."""
    expected = reference.get("windows") if reference else None
    for result in systems.values():
        windows = result.pop("windows", None)
        if windows is None or expected is None or result is reference:
            continue
        keys = sorted(set(expected) | set(windows))
        differ = [k for k in keys if tuple(expected.get(k, ())) != tuple(windows.get(k, ()))]
        result["windows_compared"] = len(keys)
        result["same_totals"] = not differ
        result["differences"] = [{"window_start": k, "plain_consumer": expected.get(k), "this": windows.get(k)} for k in differ[:5]]
        # For the systems that accept more than the rules (from_json alone, Flink SQL): how many more orders, and where fewer
        result["orders_more_than_reference"] = sum(w[1] for w in windows.values()) - sum(w[1] for w in expected.values())
        result["windows_with_fewer_orders"] = sum(1 for k in keys if tuple(windows.get(k, (0, 0)))[1] < tuple(expected.get(k, (0, 0)))[1])
    if reference is not None and expected is not None:
        reference["windows_compared"] = len(expected)
        reference["windows"] = {str(k): list(v) for k, v in sorted(expected.items())}
