"""The job under spark-submit, on a Spark standalone cluster: the command docs/cluster.md gives,
taken from the page itself, against a master and a worker started as `make spark RUNTIME=local`
starts them (free ports, a folder of their own), the executors on the worker. The driver runs
the package from the zip (--py-files), where there is no .env, as on a cluster: its invalid
messages reach the default dead-letter topic."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from dotenv import dotenv_values

from purchase_analytics.defaults import DEFAULTS
from purchase_analytics.runtime.processes import free_port
from purchase_analytics.runtime.spark_standalone import spark_start, spark_stop
from purchase_analytics.sinks import read_json_lines_totals

from conftest import ROOT, SETTINGS, TEST_JVM_OPTIONS, expected_totals, read_topic, send_raw
from malformed import MALFORMED, each_beside_a_valid_event

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

CLUSTER_DOC = ROOT / "docs" / "cluster.md"
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def standalone_command() -> tuple[str, set[str]]:
    """The spark-submit command of the page's "Spark standalone" block, and the names its
    export lines set (what a user, and this test, points the command at)."""
    text = CLUSTER_DOC.read_text()
    block = re.search(r"^Spark standalone.*?```bash\n(.*?)```", text, re.S | re.M)
    assert block, f"no Spark standalone command in {CLUSTER_DOC}"
    lines = block.group(1).splitlines()
    exported = {name for line in lines if line.startswith("export ") for name in re.findall(r"\b([A-Z_]+)=", line)}
    start = next(i for i, line in enumerate(lines) if line.startswith("spark-submit "))
    command = []
    for line in lines[start:]:
        command.append(line.removesuffix("\\").rstrip())
        if not line.endswith("\\"):
            break
    return " ".join(command), exported


@pytest.fixture
def standalone(tmp_path, monkeypatch):
    """A standalone master and one worker (one core, 1 GB) through the local runtime's own
    spark_start; its master URL. Stopped, by their pids, at the end."""
    spark_dir = tmp_path / "spark"
    port = free_port()
    monkeypatch.setenv("SPARK_DAEMON_JAVA_OPTS", " ".join(TEST_JVM_OPTIONS))
    monkeypatch.setenv("SPARK_WORKER_WEBUI_PORT", str(free_port()))
    settings = {
        **SETTINGS,
        "SPARK_MASTER_PORT": str(port),
        "SPARK_MASTER_UI_PORT": str(free_port()),
        "SPARK_WORKER_CORES": "1",
        "SPARK_WORKER_MEMORY": "1g",
    }
    try:
        spark_start(settings, spark_dir)
        yield f"spark://localhost:{port}"
    finally:
        spark_stop(spark_dir)


def test_the_documented_spark_submit_command_runs_the_job_on_a_standalone_cluster(standalone, kafka, new_topic, tmp_path):
    command, exported = standalone_command()
    assert {"SPARK_MASTER", "KAFKA_TOPIC_NAME", "CHECKPOINT_DIR"} <= exported, exported
    topic = new_topic(3)
    valid, values = each_beside_a_valid_event(T0, 41)
    send_raw(kafka, topic, values)

    # Options of Spark's own, in the conf folder spark-submit reads: the tests' cheap JVMs and a
    # small executor (the worker has 1 GB); the command stays the page's.
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    jvm = " ".join(TEST_JVM_OPTIONS)
    (conf_dir / "spark-defaults.conf").write_text(
        f"spark.driver.extraJavaOptions {jvm}\nspark.executor.extraJavaOptions {jvm}\nspark.executor.memory 512m\n"
    )
    venv_bin = Path(sys.executable).parent
    # No setting from .env or make's environment (`make test` exports them): the driver runs the
    # package from the zip, where there is no .env, so it has the package's defaults alone, but
    # for the cluster, the topic and the folders the page's export lines set.
    settings = DEFAULTS.keys() | dotenv_values(ROOT / ".env").keys()
    env = {
        **{name: value for name, value in os.environ.items() if name not in settings},
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",  # the venv's spark-submit
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",  # the worker listens on localhost; so does the driver
        "SPARK_CONF_DIR": str(conf_dir),
        "SPARK_MASTER": standalone,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "KAFKA_TOPIC_NAME": topic,
        "CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "OUTPUT_DIR": str(tmp_path / "out"),
    }
    proc = subprocess.run(
        ["bash", "-c", f"{command} --available-now --no-console"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # spark-submit passes the job's output on to its stdout
    assert f"on {standalone}:" in proc.stdout  # spark-submit's master, not the job's default
    assert read_json_lines_totals(tmp_path / "out") == expected_totals(valid)

    # Every invalid message in the default dead-letter topic (other tests' jobs may write there too)
    dead = [r for r in read_topic(kafka, DEFAULTS["KAFKA_DLQ_TOPIC_NAME"]) if dict(r.headers)["source_topic"].decode() == topic]
    assert Counter(r.value for r in dead) == Counter(payload for payload, _ in MALFORMED)
    reasons = {r.value: {n: v.decode() for n, v in r.headers}["rejection_reason"] for r in dead}
    for payload, reason in MALFORMED:
        assert reasons[payload].startswith(reason), (payload[:40], reasons[payload])

    # The executors ran on the worker: its folder holds this application's executor.
    assert list((tmp_path / "spark" / "work").glob("app-*/*/stderr")), "no executor ran on the worker"
