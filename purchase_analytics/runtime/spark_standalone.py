"""A Spark standalone master and one worker as local processes (`make spark RUNTIME=local`),
started through pyspark's own spark-class; their pid files, logs and the worker's folder
live in one folder (`.data/spark` by default)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from ..config import PROJECT_ROOT
from ..defaults import setting
from .processes import log_tail, pid_alive, read_pid, stop_pid, wait_until

SPARK_DIR = PROJECT_ROOT / ".data" / "spark"


def _spark_class() -> str:
    found = shutil.which("spark-class", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise RuntimeError("spark-class not found: run `make venv` (pyspark ships it)")
    return found


def spark_master_url(settings: dict[str, str]) -> str:
    """spark://localhost:PORT when `make spark` started a local master, else SPARK_MASTER_URL."""
    if pid_alive(read_pid(SPARK_DIR / "master.pid")):
        return f"spark://localhost:{settings['SPARK_MASTER_PORT']}"
    return setting(settings, "SPARK_MASTER_URL")


def _start_daemon(name: str, argv: list[str], java_home: Path | None, spark_dir: Path) -> int:
    spark_dir.mkdir(parents=True, exist_ok=True)
    pid_file = spark_dir / f"{name}.pid"
    if pid_alive(read_pid(pid_file)):
        return read_pid(pid_file)
    import pyspark

    env = dict(
        os.environ,
        SPARK_HOME=str(Path(pyspark.__file__).parent),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_WORKER_DIR=str(spark_dir / "work"),
        PYSPARK_PYTHON=sys.executable,
        **({"JAVA_HOME": str(java_home)} if java_home else {}),  # the worker's executors run on it too
    )
    with open(spark_dir / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def spark_start(settings: dict[str, str], spark_dir: Path = SPARK_DIR) -> None:
    """A standalone master and one worker, through pyspark's own spark-class: their pid files,
    logs and the worker's folder in spark_dir."""
    from ..spark_session import SparkConfig

    port, ui_port = settings["SPARK_MASTER_PORT"], settings["SPARK_MASTER_UI_PORT"]
    spark_class = _spark_class()
    java_home = SparkConfig.from_settings(settings).java_home  # the driver's JDK
    _start_daemon(
        "master",
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "localhost", "--port", port, "--webui-port", ui_port],
        java_home,
        spark_dir,
    )
    _start_daemon(
        "worker",
        [
            spark_class,
            "org.apache.spark.deploy.worker.Worker",
            f"spark://localhost:{port}",
            "--cores",
            settings["SPARK_WORKER_CORES"],
            "--memory",
            settings["SPARK_WORKER_MEMORY"],
            "--host",
            "localhost",
        ],
        java_home,
        spark_dir,
    )

    def worker_registered() -> bool:
        for name in ("master", "worker"):
            if not pid_alive(read_pid(spark_dir / f"{name}.pid")):
                raise RuntimeError(f"Spark {name} exited; last log lines:\n{log_tail(spark_dir / f'{name}.log')}")
        try:
            with urllib.request.urlopen(f"http://localhost:{ui_port}/json/", timeout=2) as resp:
                return json.loads(resp.read()).get("aliveworkers", 0) >= 1
        except (OSError, ValueError):
            return False

    wait_until(worker_registered, 90, "the Spark worker to register with the master", 0.5)
    print(f"Spark standalone master at spark://localhost:{port} (UI http://localhost:{ui_port}) with 1 worker; logs {spark_dir}")


def spark_stop(spark_dir: Path = SPARK_DIR) -> None:
    for name in ("worker", "master"):
        pid_file = spark_dir / f"{name}.pid"
        if stop_pid(read_pid(pid_file)):
            print(f"Spark {name} stopped")
        pid_file.unlink(missing_ok=True)
