"""A single-node Apache Kafka (KRaft, broker + controller) run as a local JVM process.

The jars come from Maven Central (`make jars`); the storage is formatted with Kafka's own
StorageTool. Used by `make kafka` (RUNTIME=local), `make run`, the tests and the benchmark.
"""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .processes import ensure_java, log_tail, pid_alive, read_pid, stop_pid, wait_until

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


@dataclass(frozen=True)
class KafkaBroker:
    jars_dir: Path
    data_dir: Path  # holds server.properties, the log dirs, the pid file and the logs
    port: int = 9092
    controller_port: int = 9093
    default_partitions: int = 3
    heap: str = "1g"

    @property
    def bootstrap_servers(self) -> str:
        return f"localhost:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "kafka.log"

    def _classpath(self) -> str:
        if not any(self.jars_dir.glob("kafka_*.jar")):
            raise RuntimeError(f"Kafka jars are missing in {self.jars_dir}; run `make jars`")
        return str(self.jars_dir / "*")

    def _write_config(self) -> Path:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@localhost:{self.controller_port}",
                    f"listeners=PLAINTEXT://localhost:{self.port},CONTROLLER://localhost:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://localhost:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.data_dir / 'kraft-logs'}",
                    f"num.partitions={self.default_partitions}",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "",
                ]
            )
        )
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(
            "\n".join(
                [
                    "status = warn",
                    "appender.file.type = File",
                    "appender.file.name = FILE",
                    f"appender.file.fileName = {self.log_file}",
                    "appender.file.layout.type = PatternLayout",
                    "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                    "rootLogger.level = INFO",
                    "rootLogger.appenderRef.file.ref = FILE",
                    "",
                ]
            )
        )
        return props

    def _java(self, *args: str) -> list[str]:
        return [
            ensure_java(), f"-Xmx{self.heap}", "-Xms256m", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", self._classpath(), *args,
        ]

    def is_running(self) -> bool:
        return pid_alive(read_pid(self.pid_file))

    def start(self, timeout_s: float = 90.0) -> bool:
        """Start the broker unless it already runs; return once it answers. True if started here."""
        if self.is_running():
            wait_until_ready(self.bootstrap_servers, timeout_s, lambda: self.is_running(), self.log_file)
            return False
        props = self._write_config()
        if not (self.data_dir / "kraft-logs" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            fmt = subprocess.run(
                # `--cluster-id=ID`: an id that starts with "-" (1 in 64) would be read as an option
                self._java(STORAGE_TOOL, "format", f"--cluster-id={cluster_id}", "-c", str(props), "--ignore-formatted"),
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise RuntimeError(f"formatting Kafka storage failed: {(fmt.stderr or fmt.stdout).strip()[-500:]}")
        with open(self.data_dir / "logs" / "kafka.out", "ab") as out:
            proc = subprocess.Popen(
                self._java(KAFKA_MAIN, str(props)), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        try:
            wait_until_ready(self.bootstrap_servers, timeout_s, lambda: proc.poll() is None, self.log_file)
        except Exception:
            self.stop()
            raise
        return True

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM (controlled shutdown), then SIGKILL after `timeout_s`. True if it was running."""
        pid = read_pid(self.pid_file)
        stopped = stop_pid(pid, timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return stopped

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests: no controlled shutdown."""
        pid = read_pid(self.pid_file)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 30, "broker to die")


def wait_until_ready(bootstrap_servers: str, timeout_s: float, alive, log_file: Path) -> None:
    """Ready means a metadata request succeeds, not that the port is open."""
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"Kafka exited during start-up; last log lines:\n{log_tail(log_file)}")
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=3000, bootstrap_timeout_ms=3000)
            try:
                admin.describe_cluster()
                return
            finally:
                admin.close()
        except Exception as exc:  # not up yet: any client error means "try again"
            last_error = exc
            time.sleep(0.5)
    raise RuntimeError(f"Kafka at {bootstrap_servers} not ready after {timeout_s:.0f}s ({last_error}); see {log_file}")


def create_topics(bootstrap_servers: str, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Create the topics that do not exist yet (name -> partitions, name -> topic configs).
    Returns the created names."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, partitions, 1, topic_configs=(configs or {}).get(name, {}))
                   for name, partitions in topics.items() if name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in missing]
    finally:
        admin.close()
