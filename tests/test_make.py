"""The Makefile read by several make commands at once: each sees every setting of .env."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
# What make -n prints for this extra target: the value make read for KAFKA_VERSION.
SHOW = "show-kafka-version: ; @echo KAFKA_VERSION=$(KAFKA_VERSION)"


def test_make_commands_started_together_each_read_the_whole_dot_env():
    """make reads .env through a file it writes at every start; started together (a producer
    and a job in two terminals), none may read it half written."""
    dot_env = dotenv_values(ROOT / ".env")
    # .env's values from the file only: not from the caller's environment (make test exports
    # them all) or the make that runs pytest
    env = {k: v for k, v in os.environ.items() if k not in dot_env and not k.startswith("MAKE") and k != "MFLAGS"}
    commands = [
        ["make", "-n", "--no-print-directory", f"--eval={SHOW}", "RUNTIME=local", target, "show-kafka-version"]
        for _ in range(8)
        for target in ("spark-produce", "spark-consume-purchase")
    ]
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands]
    results = [(c[-2], p.communicate(timeout=120)[0], p.returncode) for c, p in zip(commands, procs, strict=True)]
    wanted = f"KAFKA_VERSION={dot_env['KAFKA_VERSION']}"
    bad = [(target, code, out[-800:]) for target, out, code in results if code != 0 or not out.rstrip().endswith(f"echo {wanted}")]
    assert not bad, f"{len(bad)} of {len(results)} make commands read another KAFKA_VERSION than {wanted} or failed: {bad[:2]}"
