"""RUNTIME=local: the Makefile's targets as local processes, no Docker.

    python -m purchase_analytics.runtime.local kafka-start | kafka-stop | client-env ROLE | docker-tls
        (kafka-start also starts the Kafka UI)
    python -m purchase_analytics.runtime.local kafka-ui-start | kafka-ui-stop | dashboard-start | dashboard-stop
    python -m purchase_analytics.runtime.local spark-start | spark-stop | spark-master-url
    python -m purchase_analytics.runtime.local run [--events N | --duration S] [--rate R]
    python -m purchase_analytics.runtime.local stop-all | wipe | status

State (broker data, pid files, logs, checkpoints) lives under `.data/`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from dotenv import dotenv_values

from ..admin import create_topics
from ..checkpoint import SHAPE_SEPARATOR, shape_checkpoint
from ..config import PROJECT_ROOT, load_settings, parse_aggregator_config
from ..defaults import setting
from . import kafka_security, kafka_ui
from .kafka_broker import KafkaBroker, KafkaCluster, broker_java_options
from .processes import pid_alive, port_open, read_pid, stop_pid, stop_pids
from .spark_standalone import SPARK_DIR, spark_master_url, spark_start, spark_stop
from .web_service import WebService

DATA_DIR = PROJECT_ROOT / ".data"
KAFKA_JARS = PROJECT_ROOT / ".cache" / "jars" / "kafka"
WEB_DIR = DATA_DIR / "web"  # pid files and logs of the Kafka UI and the dashboard
DASHBOARD_MODULE = "purchase_analytics.dashboard"
PRODUCER = PROJECT_ROOT / "scripts" / "event_producer.py"
AGGREGATOR = PROJECT_ROOT / "spark-scripts" / "purchase-aggregator.py"


def int_setting(settings: dict[str, str], name: str, minimum: int = 1) -> int:
    """An integer setting, or one line naming it and its bad value."""
    raw = setting(settings, name)
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise RuntimeError(f"{name}={raw!r} (from the environment or .env) must be an integer >= {minimum}")
    return value


def _port_of(bootstrap_servers: str) -> int:
    host_port = bootstrap_servers.split(",")[0].rsplit(":", 1)
    return int_setting({"KAFKA_BOOTSTRAP_SERVERS port": host_port[-1] if len(host_port) == 2 else ""}, "KAFKA_BOOTSTRAP_SERVERS port")


def local_broker(settings: dict[str, str]) -> KafkaBroker | KafkaCluster:
    """KAFKA_BROKERS=1: one node in .data/kafka; 3: a cluster in .data/kafka-cluster whose node
    i listens on the ports + (i-1) * KAFKA_CLUSTER_PORT_STEP. KAFKA_SECURITY=sasl_ssl: SASL_SSL
    on the client port, mutual TLS on the controller port and the next one (INTERNAL)."""
    security = setting(settings, "KAFKA_SECURITY").lower()
    if security not in ("plaintext", "sasl_ssl"):
        raise RuntimeError(f"KAFKA_SECURITY={security!r}: use plaintext or sasl_ssl")
    nodes = int_setting(settings, "KAFKA_BROKERS")
    if nodes not in (1, 3):
        raise RuntimeError(f"KAFKA_BROKERS={nodes}: use 1 (one broker) or 3 (a cluster)")
    port, controller = _port_of(settings["KAFKA_BOOTSTRAP_SERVERS"]), int_setting(settings, "KAFKA_CONTROLLER_PORT")
    partitions = int_setting(settings, "KAFKA_TOPIC_PARTITIONS")
    secure = security == "sasl_ssl"
    if nodes == 1:
        data_dir = DATA_DIR / "kafka"
        return KafkaBroker(
            jars_dir=KAFKA_JARS,
            data_dir=data_dir,
            port=port,
            controller_port=controller,
            default_partitions=partitions,
            tls_dir=data_dir / "tls" if secure else None,
            internal_port=controller + 1 if secure else None,
            jvm_options=broker_java_options(settings),
        )
    step = int_setting(settings, "KAFKA_CLUSTER_PORT_STEP")
    ports = [(port + i * step, controller + i * step, controller + 1 + i * step if secure else None) for i in range(nodes)]
    data_dir = DATA_DIR / "kafka-cluster"
    return KafkaCluster.create(
        KAFKA_JARS,
        data_dir,
        ports,
        partitions,
        setting(settings, "KAFKA_CLUSTER_HEAP"),
        data_dir / "tls" if secure else None,
        broker_java_options(settings),
    )


def _nodes(kafka: KafkaBroker | KafkaCluster) -> tuple[KafkaBroker, ...]:
    return kafka.brokers if isinstance(kafka, KafkaCluster) else (kafka,)


def pipeline_topics(settings: dict[str, str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """The topics `make kafka` creates (name -> partitions) and their topic configs."""
    topics = {settings["KAFKA_TOPIC_NAME"]: int_setting(settings, "KAFKA_TOPIC_PARTITIONS")}
    configs: dict[str, dict[str, str]] = {}
    if settings.get("KAFKA_DLQ_TOPIC_NAME"):
        topics[settings["KAFKA_DLQ_TOPIC_NAME"]] = 1
    if settings.get("KAFKA_RESULTS_TOPIC_NAME"):  # the latest total per window: keep one record per key
        topics[settings["KAFKA_RESULTS_TOPIC_NAME"]] = 1
        configs[settings["KAFKA_RESULTS_TOPIC_NAME"]] = {"cleanup.policy": "compact"}
    if settings.get("KAFKA_METRICS_TOPIC_NAME"):
        topics[settings["KAFKA_METRICS_TOPIC_NAME"]] = 1
    return topics, configs


def kafka_start(settings: dict[str, str]) -> bool:
    """Start the broker (unless it runs), create the topics, then start the Kafka UI next to it."""
    kafka = local_broker(settings)
    for node in _nodes(kafka):
        if not node.is_running() and port_open(node.port):
            raise RuntimeError(f"port {node.port} is taken by another process; stop it or set KAFKA_BOOTSTRAP_SERVERS")
    started_at = time.monotonic()
    started = kafka.start()
    topics, configs = pipeline_topics(settings)
    tls_dir = _nodes(kafka)[0].tls_dir
    replication = _nodes(kafka)[0].replication_factor
    created = create_topics(kafka.admin_bootstrap, topics, replication, kafka.admin_security(), configs)
    nodes = len(_nodes(kafka))
    state = f"started in {time.monotonic() - started_at:.1f}s" if started else "already running"
    print(
        f"Kafka {settings.get('KAFKA_VERSION', '')} (KRaft, {nodes} local JVM{'s' if nodes > 1 else ''}) {state} "
        f"at {kafka.bootstrap_servers}; "
        f"topics {', '.join(topics)} (replication factor {replication}){' (created ' + ', '.join(created) + ')' if created else ''}; "
        f"log {_nodes(kafka)[0].log_file}"
    )
    if tls_dir:
        kafka_security.create_users(kafka.admin_bootstrap, tls_dir)
        acls = kafka_security.create_acls(
            kafka.admin_bootstrap, tls_dir, settings["KAFKA_TOPIC_NAME"], [t for t in topics if t != settings["KAFKA_TOPIC_NAME"]]
        )
        env_files = kafka_security.write_role_env_files(tls_dir, kafka.bootstrap_servers)
        print(
            f"secured: SASL_SSL ({kafka_security.SCRAM_MECHANISM}) with the local CA {tls_dir / 'ca.pem'}; users "
            f"{', '.join(kafka_security.ROLES)} ({acls} ACLs); client settings per role in {env_files['producer'].parent}/<role>.env"
        )
        kafka_ui_start(settings, dict(dotenv_values(env_files["ui"])))  # the read-only user
        return started
    kafka_ui_start(settings)
    return started


def kafka_ui_service(settings: dict[str, str]) -> WebService:
    return WebService("kafka-ui", int_setting(settings, "KAFKA_UI_PORT"), WEB_DIR)


def dashboard_service(settings: dict[str, str]) -> WebService:
    return WebService("dashboard", int_setting(settings, "DASHBOARD_PORT"), WEB_DIR)


def _start_web(service: WebService, module: str, args: list[str], what: str, env: dict[str, str] | None = None) -> bool:
    """Start a web server unless it runs; True if it runs now. A failure is one line on stderr
    and never stops the broker or the pipeline."""
    try:
        started = service.start(module, args, env=env)
    except (RuntimeError, OSError) as exc:
        print(f"warning: {what} not started: {exc}", file=sys.stderr)
        return False
    print(f"{what} {'started' if started else 'already running'} at {service.running_url()}/ ; log {service.log_file}")
    return True


def kafka_ui_start(settings: dict[str, str], client_env: dict[str, str] | None = None) -> bool:
    """The Kafka UI next to the broker; `client_env`: the client settings it connects with
    (a secured broker's `ui` role), else the ones of .env and the environment."""
    service = kafka_ui_service(settings)
    bootstrap = settings["KAFKA_BOOTSTRAP_SERVERS"]
    if not port_open(_port_of(bootstrap), bootstrap.split(",")[0].rsplit(":", 1)[0]):
        print(f"warning: Kafka UI not started: no broker answers at {bootstrap} (run `make kafka`)", file=sys.stderr)
        return False
    env = {**os.environ, **client_env} if client_env else None
    running = _start_web(service, kafka_ui.MODULE, kafka_ui.start_args(bootstrap, service.port), "Kafka UI", env)
    if running:
        topics = [settings["KAFKA_TOPIC_NAME"], settings.get("KAFKA_DLQ_TOPIC_NAME")]
        print("  messages: " + "  ".join(f"{service.running_url()}/topic/{t}" for t in topics if t))
    return running


def dashboard_start(settings: dict[str, str]) -> bool:
    service = dashboard_service(settings)
    return _start_web(service, DASHBOARD_MODULE, ["--port", str(service.port)], "Dashboard")


def web_stop(service: WebService, what: str) -> None:
    if service.stop():
        print(f"{what} stopped")


def kafka_stop(settings: dict[str, str]) -> None:
    """Every local broker this project started (one node and the cluster's), whatever the settings now."""
    pid_files = [DATA_DIR / "kafka" / "kafka.pid", *sorted((DATA_DIR / "kafka-cluster").glob("node-*/kafka.pid"))]
    stopped = stop_pids([read_pid(f) for f in pid_files], 15)  # see KafkaCluster.stop
    for pid_file in pid_files:
        pid_file.unlink(missing_ok=True)
    if stopped:
        print(f"Kafka stopped ({stopped} broker{'s' if stopped > 1 else ''})")


def client_env(settings: dict[str, str], role: str) -> str:
    """The client settings file for `role` (producer, job, ui) of the secured local broker."""
    tls_dir = _nodes(local_broker(settings))[0].tls_dir
    if not tls_dir or not (tls_dir / f"{role}.env").exists():
        raise RuntimeError("no secured local broker: run `make kafka KAFKA_SECURITY=sasl_ssl` first")
    return str(tls_dir / f"{role}.env")


def run_checkpoint_args(settings: dict[str, str], job_args: list[str]) -> list[str]:
    """`make run`'s checkpoint: one per aggregation shape beside CHECKPOINT_DIR (window,
    slide, group fields, state store: queries.checkpoint_shape), so that a run with other
    settings starts its own checkpoint instead of being refused by the last one's. A
    checkpoint given with --checkpoint (ARGS) is used as it is, and guarded as always."""
    if any(arg == "--checkpoint" or arg.startswith("--checkpoint=") for arg in job_args):
        return []
    from ..queries import checkpoint_shape

    config = parse_aggregator_config(job_args, settings)  # a bad setting: one line and exit 2, before anything starts
    return ["--checkpoint", shape_checkpoint(config.checkpoint_dir, checkpoint_shape(config))]


def run(settings: dict[str, str], events: int, duration_s: float, rate: float, extra_args: list[str]) -> int:
    """`make run`: broker, topics, Kafka UI, dashboard, producer and the Spark job together.
    Ctrl-C stops it all; after a bounded run (events or duration) the broker, the UI and the
    dashboard keep running so that the results can be looked at, until `make clean`."""
    checkpoint = run_checkpoint_args(settings, ["--master", setting(settings, "SPARK_MASTER_URL"), *extra_args])
    web = [(kafka_ui_service(settings), "Kafka UI"), (dashboard_service(settings), "Dashboard")]
    started_web = [(service, what) for service, what in web if not service.is_running()]  # what Ctrl-C stops
    started_broker = kafka_start(settings)
    dashboard_start(settings)
    python = sys.executable
    producer_args = ["--rate", str(rate), "--count", str(events)]
    job_args = ["--master", setting(settings, "SPARK_MASTER_URL"), *extra_args, *checkpoint]
    children: list[subprocess.Popen] = []
    interrupted = False
    try:
        producer = subprocess.Popen([python, str(PRODUCER), *producer_args])
        children.append(producer)
        job = subprocess.Popen([python, str(AGGREGATOR), *job_args])
        children.append(job)
        deadline = time.monotonic() + duration_s if duration_s else None
        bounded = events > 0 or duration_s > 0
        while job.poll() is None:
            if deadline and time.monotonic() > deadline and producer.poll() is None:
                producer.send_signal(signal.SIGTERM)
            if bounded and producer.poll() is not None:
                job.send_signal(signal.SIGUSR1)  # drain what was produced, then stop
                break
            time.sleep(0.5)
        job.wait()
        if producer.poll() is None:
            producer.send_signal(signal.SIGTERM)  # the job ended on its own (error or timeout)
    except KeyboardInterrupt:
        interrupted = True
        print("\nstopping: waiting for the producer and the Spark job to finish cleanly", flush=True)
    finally:
        for child in children:
            try:
                child.wait(timeout=60)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                stop_pid(child.pid, 10)
        if interrupted or not (events > 0 or duration_s > 0):
            for service, what in started_web:
                web_stop(service, what)
            if started_broker:
                kafka_stop(settings)
        else:
            ui_url, dashboard_url = kafka_ui_service(settings).running_url(), dashboard_service(settings).running_url()
            print(
                f"Kafka, the Kafka UI ({ui_url}/) and the dashboard ({dashboard_url}/) "
                "keep running so that you can look at the results; `make clean` stops them"
            )
    if interrupted:
        return 130
    return max((c.returncode or 0) for c in children) if children else 1


def stop_all(settings: dict[str, str]) -> None:
    web_stop(dashboard_service(settings), "Dashboard")
    web_stop(kafka_ui_service(settings), "Kafka UI")
    spark_stop()
    kafka_stop(settings)


def wipe(settings: dict[str, str], data_dir: Path = DATA_DIR, root: Path = PROJECT_ROOT) -> list[str]:
    """`make wipe` (after stopping everything): broker data, Spark's local files, the
    checkpoints (under .data/checkpoints, and CHECKPOINT_DIR with make run's, one per
    aggregation shape beside it) and the results the job writes with the settings:
    OUTPUT_DIR's batch files and RESULTS_DB. Nothing else in those places is touched.
    Relative paths are the project root's. Returns what was deleted, for its line."""
    for sub in ("kafka", "kafka-cluster", "checkpoints", "spark"):
        shutil.rmtree(data_dir / sub, ignore_errors=True)
    deleted = ["broker data", "checkpoints"]
    checkpoint = settings.get("CHECKPOINT_DIR")
    if checkpoint and "://" not in checkpoint:
        base = root / checkpoint
        for path in [base, *base.parent.glob(f"{base.name}{SHAPE_SEPARATOR}*")]:
            shutil.rmtree(path, ignore_errors=True)
    output_dir = settings.get("OUTPUT_DIR")
    if output_dir and (root / output_dir).is_dir():
        for path in (root / output_dir).glob("batch-*.jsonl"):
            path.unlink()
        deleted.append(f"the batch files in {output_dir}")
    results_db = settings.get("RESULTS_DB")
    if results_db:
        for suffix in ("", "-journal", "-wal", "-shm"):
            (root / f"{results_db}{suffix}").unlink(missing_ok=True)
        deleted.append(results_db)
    return deleted


def status(settings: dict[str, str]) -> None:
    broker = local_broker(settings)
    print(f"kafka:  {'running at ' + broker.bootstrap_servers if broker.is_running() else 'stopped'}")
    for name in ("master", "worker"):
        print(f"spark {name}: {'running' if pid_alive(read_pid(SPARK_DIR / f'{name}.pid')) else 'stopped'}")
    for service in (kafka_ui_service(settings), dashboard_service(settings)):
        print(f"{service.name}: {'running at ' + service.running_url() + '/' if service.is_running() else 'stopped'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m purchase_analytics.runtime.local", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = [
        "kafka-start",
        "kafka-stop",
        "client-env",
        "docker-tls",
        "kafka-ui-start",
        "kafka-ui-stop",
        "dashboard-start",
        "dashboard-stop",
        "spark-start",
        "spark-stop",
        "spark-master-url",
        "run",
        "stop-all",
        "wipe",
        "status",
    ]
    parser.add_argument("command", choices=commands)
    parser.add_argument("--events", type=int, default=0, help="run: stop after producing this many events")
    parser.add_argument("--duration", type=float, default=0, help="run: stop after this many seconds")
    parser.add_argument("--rate", type=float, default=None, help="run: producer events/s")
    args, extra = parser.parse_known_args(argv)
    settings = load_settings()
    try:
        if args.command == "kafka-start":
            kafka_start(settings)
        elif args.command == "kafka-stop":
            kafka_stop(settings)
        elif args.command == "docker-tls":
            tls_dir = Path(settings.get("KAFKA_TLS_DIR", DATA_DIR / "kafka-docker" / "tls"))
            kafka_security.prepare_docker(tls_dir, f"localhost:{_port_of(settings['KAFKA_BOOTSTRAP_SERVERS'])}")
            print(f"certificates, passwords and client settings for the secured compose variant in {tls_dir}")
        elif args.command == "client-env":
            print(client_env(settings, extra[0] if extra else "producer"))
        elif args.command == "kafka-ui-start":
            return 0 if kafka_ui_start(settings) else 1
        elif args.command == "kafka-ui-stop":
            web_stop(kafka_ui_service(settings), "Kafka UI")
        elif args.command == "dashboard-start":
            return 0 if dashboard_start(settings) else 1
        elif args.command == "dashboard-stop":
            web_stop(dashboard_service(settings), "Dashboard")
        elif args.command == "spark-start":
            spark_start(settings)
        elif args.command == "spark-stop":
            spark_stop()
        elif args.command == "spark-master-url":
            print(spark_master_url(settings))
        elif args.command == "run":
            rate = args.rate if args.rate is not None else float(settings["RUN_PRODUCER_RATE"])
            return run(settings, args.events, args.duration, rate, extra)
        elif args.command == "stop-all":
            stop_all(settings)
        elif args.command == "wipe":
            stop_all(settings)
            print(f"wiped {', '.join(wipe(settings))} (under {DATA_DIR} unless named)")
        elif args.command == "status":
            status(settings)
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
