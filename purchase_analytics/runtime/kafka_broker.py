"""Apache Kafka (KRaft, broker + controller) run as local JVM processes: one node, or a
`KafkaCluster` of several (`make kafka KAFKA_BROKERS=3`), plaintext or secured
(`tls_dir`: SASL_SSL for clients, mutual TLS between brokers, ACLs; see kafka_security).

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

from ..defaults import setting
from ..jvm import class_archive_file, class_archive_options, ensure_java
from ..kafka_client import KafkaSecurity, admin_client
from .processes import log_tail, pid_alive, read_pid, stop_pid, stop_pids, wait_until

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
    node_id: int = 1
    voters: str | None = None  # controller.quorum.voters; None: this node alone
    cluster_id: str | None = None  # shared by the nodes of a cluster; None: drawn at format time
    replication_factor: int = 1  # of the internal topics (offsets, transactions)
    tls_dir: Path | None = None  # secured: SASL_SSL on `port`, mutual TLS on `internal_port` and the controller
    internal_port: int | None = None
    # JVM options besides the heap; none: the JDK's defaults. The project's brokers take
    # KAFKA_BROKER_JAVA_OPTIONS (broker_java_options); the tests' short-lived ones the client
    # compiler and the serial collector (tests/conftest.py).
    jvm_options: tuple[str, ...] = ()
    # Map the class archive of these jars (class_archive_path) when there is one: a start
    # then takes about 30% less CPU (runtime/class_archive.py builds it; `make setup`).
    class_archive: bool = True

    @property
    def bootstrap_servers(self) -> str:
        return f"localhost:{self.port}"

    @property
    def admin_bootstrap(self) -> str:
        """Where the project's own tooling connects: the mutual-TLS listener when secured."""
        return f"localhost:{self.internal_port}" if self.tls_dir else self.bootstrap_servers

    def admin_security(self) -> KafkaSecurity:
        from .kafka_security import admin_security

        return admin_security(self.tls_dir) if self.tls_dir else KafkaSecurity()

    def _listener_lines(self) -> list[str]:
        if not self.tls_dir:
            return [
                f"listeners=PLAINTEXT://localhost:{self.port},CONTROLLER://localhost:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://localhost:{self.port}",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            ]
        from .kafka_security import broker_properties

        return [
            f"listeners=CLIENT://localhost:{self.port},INTERNAL://localhost:{self.internal_port},CONTROLLER://localhost:{self.controller_port}",
            f"advertised.listeners=CLIENT://localhost:{self.port},INTERNAL://localhost:{self.internal_port}",
            "inter.broker.listener.name=INTERNAL",
            "listener.security.protocol.map=CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
            *broker_properties(self.tls_dir),
        ]

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "kafka.log"

    def _classpath(self) -> str:
        if not any(self.jars_dir.glob("kafka_*.jar")):
            raise RuntimeError(f"Kafka jars are missing in {self.jars_dir}; run `make jars`")
        # resolved: `make jars` links the folder to the user's cache, the one path a class archive can name
        return str(self.jars_dir.resolve() / "*")

    def _write_config(self) -> Path:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    f"controller.quorum.voters={self.voters or f'{self.node_id}@localhost:{self.controller_port}'}",
                    "controller.listener.names=CONTROLLER",
                    *self._listener_lines(),
                    f"log.dirs={self.data_dir / 'kraft-logs'}",
                    f"num.partitions={self.default_partitions}",
                    f"default.replication.factor={self.replication_factor}",
                    f"min.insync.replicas={min(2, self.replication_factor)}",
                    f"offsets.topic.replication.factor={self.replication_factor}",
                    f"transaction.state.log.replication.factor={self.replication_factor}",
                    f"transaction.state.log.min.isr={min(2, self.replication_factor)}",
                    f"share.coordinator.state.topic.replication.factor={self.replication_factor}",
                    f"share.coordinator.state.topic.min.isr={min(2, self.replication_factor)}",
                    "group.initial.rebalance.delay.ms=0",
                    # Nodes on one host: notice a dead node in seconds, not the production 9-30 s; a node
                    # restarted after a crash waits that long for its old registration to expire.
                    "broker.session.timeout.ms=4000",
                    "broker.heartbeat.interval.ms=1000",
                    *(["replica.lag.time.max.ms=5000"] if self.replication_factor > 1 else []),
                    *([] if self.tls_dir else ["auto.create.topics.enable=true"]),
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
        archive = class_archive_path(self.jars_dir) if self.class_archive else None
        return [
            ensure_java(),
            f"-Xmx{self.heap}",
            "-Xms256m",
            *self.jvm_options,
            *(class_archive_options(archive) if archive and archive.is_file() else []),
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            self._classpath(),
            *args,
        ]

    def is_running(self) -> bool:
        return pid_alive(read_pid(self.pid_file))

    def start(self, timeout_s: float = 90.0) -> bool:
        """Start the broker unless it already runs; return once it answers. True if started here."""
        if self.is_running():
            wait_until_ready(self.admin_bootstrap, timeout_s, lambda: self.is_running(), self.log_file, self.admin_security())
            return False
        proc = self.launch()
        try:
            wait_until_ready(self.admin_bootstrap, timeout_s, lambda: proc.poll() is None, self.log_file, self.admin_security())
        except Exception:
            self.stop()
            raise
        return True

    def launch(self) -> subprocess.Popen:
        """Format the storage once and start the JVM; does not wait (a cluster starts all its
        nodes first: none answers before the quorum has a majority)."""
        if self.tls_dir:
            from .kafka_security import ensure_tls_material

            ensure_tls_material(self.tls_dir)
        props = self._write_config()
        if not (self.data_dir / "kraft-logs" / "meta.properties").exists():
            cluster_id = self.cluster_id or new_cluster_id()
            fmt = subprocess.run(
                # `--cluster-id=ID`: an id that starts with "-" (1 in 64) would be read as an option
                self._java(STORAGE_TOOL, "format", f"--cluster-id={cluster_id}", "-c", str(props), "--ignore-formatted"),
                capture_output=True,
                text=True,
            )
            if fmt.returncode != 0:
                raise RuntimeError(f"formatting Kafka storage failed: {(fmt.stderr or fmt.stdout).strip()[-500:]}")
        with open(self.data_dir / "logs" / "kafka.out", "ab") as out:
            proc = subprocess.Popen(
                self._java(KAFKA_MAIN, str(props)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc

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


def broker_java_options(settings: dict[str, str]) -> tuple[str, ...]:
    """KAFKA_BROKER_JAVA_OPTIONS: the JVM options of every broker the project starts."""
    return tuple(setting(settings, "KAFKA_BROKER_JAVA_OPTIONS").split())


def class_archive_path(jars_dir: Path) -> Path:
    """The JVM class archive of the Kafka jars in `jars_dir` and the `java` that runs them, in
    the user's cache (runtime/class_archive.py builds it). The JVM maps an archive only for
    the exact class path it was made with, so the key is the jars' resolved folder: `make
    jars` links every checkout's .cache/jars/kafka to the same one."""
    return class_archive_file("kafka", jars_dir.resolve())


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def wait_until_ready(bootstrap_servers: str, timeout_s: float, alive, log_file: Path, security: KafkaSecurity | None = None) -> None:
    """Ready means a metadata request succeeds, not that the port is open."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"Kafka exited during start-up; last log lines:\n{log_tail(log_file)}")
        try:
            admin = admin_client(bootstrap_servers, security, 3.0)
            try:
                admin.describe_cluster()
                return
            finally:
                admin.close()
        except Exception as exc:  # not up yet: any client error means "try again"
            last_error = exc
            time.sleep(0.5)
    raise RuntimeError(f"Kafka at {bootstrap_servers} not ready after {timeout_s:.0f}s ({last_error}); see {log_file}")


@dataclass(frozen=True)
class KafkaCluster:
    """Several KRaft nodes on this host, each broker and controller (a quorum of three
    survives losing one). Topics get replication factor 3 and min.insync.replicas=2."""

    brokers: tuple[KafkaBroker, ...]

    @classmethod
    def create(
        cls,
        jars_dir: Path,
        data_dir: Path,
        ports: list[tuple[int, int, int | None]],
        default_partitions: int = 3,
        heap: str = "512m",
        tls_dir: Path | None = None,
        jvm_options: tuple[str, ...] = (),
    ) -> KafkaCluster:
        """`ports`: (client, controller, internal) per node; internal only when secured."""
        data_dir.mkdir(parents=True, exist_ok=True)
        id_file = data_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        voters = ",".join(f"{i}@localhost:{controller}" for i, (_, controller, _) in enumerate(ports, 1))
        return cls(
            tuple(
                KafkaBroker(
                    jars_dir,
                    data_dir / f"node-{i}",
                    port,
                    controller,
                    default_partitions,
                    heap,
                    node_id=i,
                    voters=voters,
                    cluster_id=id_file.read_text().strip(),
                    replication_factor=min(3, len(ports)),
                    tls_dir=tls_dir,
                    internal_port=internal,
                    jvm_options=jvm_options,
                )
                for i, (port, controller, internal) in enumerate(ports, 1)
            )
        )

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(b.bootstrap_servers for b in self.brokers)

    @property
    def admin_bootstrap(self) -> str:
        return ",".join(b.admin_bootstrap for b in self.brokers)

    @property
    def replication_factor(self) -> int:
        return self.brokers[0].replication_factor

    def admin_security(self) -> KafkaSecurity:
        return self.brokers[0].admin_security()

    def is_running(self) -> bool:
        return any(b.is_running() for b in self.brokers)

    def start(self, timeout_s: float = 120.0) -> bool:
        """Start the nodes that are not running, then wait until the cluster answers."""
        started = [b for b in self.brokers if not b.is_running()]
        for broker in started:
            broker.launch()
        alive = lambda: all(b.is_running() for b in self.brokers)  # noqa: E731
        try:
            wait_until_ready(self.admin_bootstrap, timeout_s, alive, self.brokers[0].log_file, self.admin_security())
            wait_until(lambda: len(self._describe()["brokers"]) == len(self.brokers), timeout_s, "every broker to register")
            # Registered is not yet serving: a node is listed before its client listener
            # accepts connections, and a client that picks it then fails (ECONNREFUSED).
            for broker in self.brokers:
                wait_until_ready(broker.admin_bootstrap, timeout_s, alive, broker.log_file, self.admin_security())
        except Exception:
            if started:
                self.stop()
            raise
        return bool(started)

    def _describe(self) -> dict:
        """The cluster as its metadata describes it (its registered brokers)."""
        admin = admin_client(self.admin_bootstrap, self.admin_security())
        try:
            return admin.describe_cluster()
        finally:
            admin.close()

    def stop(self, timeout_s: float = 15.0) -> bool:
        """All nodes at once. Once a majority has exited, the last node cannot finish its
        controlled shutdown (no quorum to acknowledge it) and is killed after `timeout_s`."""
        stopped = stop_pids([read_pid(b.pid_file) for b in self.brokers], timeout_s)
        for broker in self.brokers:
            broker.pid_file.unlink(missing_ok=True)
        return stopped > 0

    def broker(self, node_id: int) -> KafkaBroker:
        return self.brokers[node_id - 1]
