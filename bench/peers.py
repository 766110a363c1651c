"""The benchmark's peers: the Spark job's windows in other engines, each a standalone
program in its own virtualenv (make bench-peers), printing one JSON result on stdout
(bench/peer_common.py). `bench/run.py` runs `peer_command(name, ...)` and measures it."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from purchase_analytics.config import PROJECT_ROOT, load_settings


@dataclass(frozen=True)
class Peer:
    module: str  # run as `python -m module`
    venv: str  # relative to the project root; `.installed` marks a finished install
    needs_java: bool = False


PEERS = {
    "quix": Peer("bench.quix_peer", ".venv-quix"),
    "flink_sql": Peer("bench.flink_peer", ".venv-flink", needs_java=True),
}
# peer_command's rule keywords and their options; every peer takes them all
RULE_OPTIONS = {"window_s": "--window-s", "watermark_s": "--watermark-s", "price_max": "--price-max", "max_future_s": "--max-future-s"}


def python_of(name: str) -> Path:
    return PROJECT_ROOT / PEERS[name].venv / "bin" / "python"


def peer_command(name: str, bootstrap_servers: str, topic: str, **rules: int) -> list[str]:
    """The argv that runs peer `name` on `topic`. `rules` (window_s, watermark_s, price_max,
    max_future_s) override the .env defaults. The program needs no particular cwd."""
    unknown = rules.keys() - RULE_OPTIONS.keys()
    if unknown:
        raise ValueError(f"unknown rule options {sorted(unknown)}; known: {sorted(RULE_OPTIONS)}")
    argv = [str(python_of(name)), "-m", PEERS[name].module, "--bootstrap-servers", bootstrap_servers, "--topic", topic]
    for key, value in rules.items():
        argv += [RULE_OPTIONS[key], str(value)]
    return argv


def available(name: str) -> str | None:
    """None when peer `name` can run, else why not (and what to run)."""
    peer = PEERS[name]
    if not (PROJECT_ROOT / peer.venv / ".installed").exists():
        return f"{name}: {peer.venv} is not installed: run make bench-peers"
    if name == "flink_sql":
        jars_dir = PROJECT_ROOT / load_settings()["FLINK_CONNECTOR_JARS_DIR"]
        if not any(Path(jars_dir).glob("*.jar")):
            return f"{name}: no Flink Kafka connector jar in {jars_dir}: run make bench-peers"
    if peer.needs_java and not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return f"{name}: no java on PATH and no JAVA_HOME (Flink needs Java 17)"
    return None
