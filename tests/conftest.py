"""Shared fixtures: one real Kafka broker per run (shared by the xdist workers) and one local
SparkSession per worker, uuid topic names per test, and the harness that runs the job's own
queries in-process.

Tests are marked by what they start (pyproject.toml): `kafka` (the session broker, or one
of their own), `spark` (a JVM: the session's SparkSession or a spark-submit child) and
`slow` (command-line end to end, fault injection). Fixtures mark their users themselves.
The benchmark's own tests (its harness and its peers: BENCH_FILES) are marked `bench`:
`make test-bench` runs them, `make test` leaves them out.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from purchase_analytics.admin import create_topics, ensure_output_topics, wait_for_topic
from purchase_analytics.config import AggregatorConfig, load_settings, parse_aggregator_config
from purchase_analytics.job import run_job
from purchase_analytics.progress import JobSummary
from purchase_analytics.queries import WindowsHandler, start_queries, window_sinks
from purchase_analytics.reference import DEFAULT_WINDOW_S, read_topic, window_totals
from purchase_analytics.reporting import ProgressReporter
from purchase_analytics.runtime.kafka_broker import KafkaBroker
from purchase_analytics.runtime.local import KAFKA_JARS
from purchase_analytics.runtime.processes import free_port
from purchase_analytics.signals import JobSignals
from purchase_analytics.sinks import KafkaPublisher

ROOT = Path(__file__).resolve().parent.parent
AGGREGATOR = ROOT / "spark-scripts" / "purchase-aggregator.py"
PRODUCER = ROOT / "scripts" / "event_producer.py"
# Every JVM the tests start (brokers, the session's SparkSession, the aggregator command
# lines) runs with the client compiler only, the serial collector and no bytecode verification
# of the (Maven Central and pyspark) jars: a short-lived JVM then needs about half the CPU time
# to start, on two cores shared by the workers. The behaviour is the same.
TEST_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-XX:+UnlockDiagnosticVMOptions", "-XX:-BytecodeVerificationRemote")
# .env alone, so the tests do not depend on the caller's environment.
SETTINGS = {**load_settings(environ={}), "SPARK_DRIVER_JAVA_OPTIONS": " ".join(TEST_JVM_OPTIONS)}
# The environment of the command lines the tests start (the settings still come from .env).
CHILD_ENV = {**os.environ, "SPARK_DRIVER_JAVA_OPTIONS": SETTINGS["SPARK_DRIVER_JAVA_OPTIONS"]}
# Programs that start JVMs of their own (the benchmark, the Flink peer) get the same options
# through JAVA_TOOL_OPTIONS, the collector aside: their launchers may choose one themselves.
TOOL_ENV = {**os.environ, "JAVA_TOOL_OPTIONS": " ".join(o for o in TEST_JVM_OPTIONS if not o.endswith("GC"))}

FIXTURE_MARKS = {"kafka": "kafka", "broker": "kafka", "new_topic": "kafka", "spark": "spark"}
BENCH_FILES = ("test_bench_*.py", "test_peers.py")


# ---------------------------------------------------------------- the schedule of `make test`
# `make test` runs xdist workers (-n 3 --dist loadgroup --no-loadscope-reorder). The work
# goes out in collection order, a unit at a time to a worker with fewer than three tests
# queued, so the order below is the schedule. A unit is one test, or a group of tests that
# must share a worker (GROUPS, by file). xdist's own loadgroup finds its groups by renaming
# node ids, which pytest 9 no longer reads, so conftest names the groups and schedules them.
GROUPS = {
    # The benchmark smoke test first, on a worker of its own until it ends; the config tests
    # (no JVM) keep that worker from taking more work at the start.
    "tests/test_bench_smoke.py": "bench",
    "tests/test_config.py": "bench",
    # The unreachable-broker command lines wait out their timeouts during the end-to-end test.
    "tests/test_pipeline.py": "pipeline",
    "tests/test_secured.py": "secured",  # one secured broker for the file (a module fixture)
    "tests/test_cluster.py": "cluster",  # one three-broker cluster for the file (a module fixture)
}
# How long each test took in the last run (setup, call and teardown): the controller writes
# them at the end of every run to LAST_DURATIONS; a fresh clone starts from DURATIONS, which
# `make test-durations` refreshes from the last run. The longest units go first, so that the
# short ones fill the workers' ends evenly.
DURATIONS = ROOT / "tests" / "durations.json"
LAST_DURATIONS = ROOT / ".cache" / "test-durations.json"
FIRST = "tests/test_bench_smoke.py::test_smoke_run_measures_every_figure"  # first, whatever it takes


def known_durations() -> dict[str, float]:
    for path in (LAST_DURATIONS, DURATIONS):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return {}


def unit_of(nodeid: str) -> str:
    """What the schedule hands out at once: a group of GROUPS, else the test."""
    return GROUPS.get(nodeid.split("::")[0], nodeid)


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & FIXTURE_MARKS.keys():
            item.add_marker(FIXTURE_MARKS[fixture])
        if any(item.path.match(pattern) for pattern in BENCH_FILES):
            item.add_marker("bench")
    durations = known_durations()
    weights: dict[str, float] = {}
    for item in items:
        unit = unit_of(item.nodeid)
        weights[unit] = weights.get(unit, 0.0) + (1e6 if item.nodeid == FIRST else durations.get(item.nodeid, 0.0))
    items.sort(key=lambda item: (-weights[unit_of(item.nodeid)], unit_of(item.nodeid)))  # stable within a unit


def still_there(nodeid: str) -> bool:
    path, _, name = nodeid.partition("::")
    try:
        return f"def {name.split('[')[0]}(" in (ROOT / path).read_text()
    except OSError:
        return False


class DurationLog:
    """The controller's record of every test's seconds (setup + call + teardown), written at the end."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report):
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    @pytest.hookimpl
    def pytest_sessionfinish(self, session):
        if not self.seconds:
            return
        merged = {k: v for k, v in known_durations().items() if still_there(k)}  # a renamed or moved test leaves
        merged.update({k: round(v, 2) for k, v in self.seconds.items()})
        LAST_DURATIONS.parent.mkdir(exist_ok=True)
        LAST_DURATIONS.write_text(json.dumps(dict(sorted(merged.items())), indent=1) + "\n")


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller, or a run without workers
        config.pluginmanager.register(DurationLog(), "duration-log")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's scheduling by units: a group of GROUPS, else a single test."""

        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return GroupScheduling(config, log)


def own_broker(data_dir: Path, **options) -> KafkaBroker:
    """A single-node KRaft broker of a test's own, on free ports, with the tests' JVM options."""
    return KafkaBroker(KAFKA_JARS, data_dir, free_port(), free_port(), jvm_options=TEST_JVM_OPTIONS, **options)


SHARED_BROKER = "session-broker"  # under the run's base temp dir, which the xdist workers share


@pytest.fixture(scope="session")
def broker(tmp_path_factory, worker_id):
    """A real single-node KRaft broker from the project's own runtime code. Under xdist the
    first worker that needs it starts it and the others use the same one (topics are
    uuid-named); the controller stops it at the end (pytest_unconfigure)."""
    if worker_id == "master":
        broker = own_broker(tmp_path_factory.mktemp("kafka"))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()
        return
    shared = tmp_path_factory.getbasetemp().parent / SHARED_BROKER
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        ports = shared / "ports.json"
        if ports.exists():
            port, controller_port = json.loads(ports.read_text())
            broker = KafkaBroker(KAFKA_JARS, shared, port, controller_port, jvm_options=TEST_JVM_OPTIONS)
        else:
            broker = own_broker(shared)
            ports.write_text(json.dumps([broker.port, broker.controller_port]))
        broker.start()  # or, when another worker started it, wait until it answers
    yield broker


def pytest_unconfigure(config):
    """The controller of an xdist run stops the broker its workers shared."""
    if hasattr(config, "workerinput") or not config.pluginmanager.has_plugin("dsession"):
        return
    shared = config._tmp_path_factory.getbasetemp() / SHARED_BROKER  # the base of the workers' base temp dirs
    if (shared / "ports.json").exists():
        port, controller_port = json.loads((shared / "ports.json").read_text())
        KafkaBroker(KAFKA_JARS, shared, port, controller_port).stop()


@pytest.fixture(scope="session")
def kafka(broker) -> str:
    return broker.bootstrap_servers


@pytest.fixture
def new_topic(kafka):
    """Factory: a fresh uuid-named topic (and its partitions) per call."""

    def make(partitions: int = 3) -> str:
        name = f"source-{uuid.uuid4().hex[:12]}"
        create_topics(kafka, {name: partitions})
        return name

    return make


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for every in-process test, with the Kafka connector jars."""
    from purchase_analytics.spark_session import SparkConfig, create_spark_session

    config = parse_aggregator_config([], SETTINGS)
    session = create_spark_session(
        "tests", "local[2]", config.shuffle_partitions, config.session_timezone, SparkConfig.from_settings(SETTINGS)
    )
    yield session
    session.stop()


def job_config(*args: str, available_now: bool = True) -> AggregatorConfig:
    """The aggregator's configuration from its command-line options and .env, as the CLI builds it."""
    return parse_aggregator_config([*args, "--available-now"] if available_now else list(args), SETTINGS)


def job_args(kafka: str, topic: str, tmp_path, *extra: str):
    """The aggregator's configuration for `topic`: checkpoint and JSON lines under tmp_path,
    no console table, no dead-letter query unless `extra` names one."""
    checkpoint, out = str(tmp_path / "ckpt"), str(tmp_path / "out")
    return job_config(
        "--bootstrap-servers",
        kafka,
        "--topic",
        topic,
        "--checkpoint",
        checkpoint,
        "--output-dir",
        out,
        "--dlq-topic",
        "",
        "--no-console",
        *extra,
    )


def run_queries(spark, config: AggregatorConfig, timeout_s: float = 180) -> JobSummary:
    """The job's own queries (`queries.start_queries`, available-now trigger) on the shared
    session: wait until all available input is processed, stop them in any case, and fold
    their progress into a JobSummary with the job's own reporter (results and metrics
    topics and the progress file included)."""
    assert config.available_now, "in-process runs must end by themselves"
    ensure_output_topics(config)
    publisher = KafkaPublisher.for_job(config) if (config.results_topic or config.metrics_topic) else None
    summary = JobSummary()
    handler = WindowsHandler(spark, config, window_sinks(config, publisher))
    reporter = ProgressReporter(handler, config, summary, publisher, io.StringIO())
    queries = start_queries(spark, config, handler)
    try:
        for query in queries:
            query.processAllAvailable()
            assert query.awaitTermination(timeout_s), f"query {query.name} did not finish in {timeout_s:.0f}s"
    finally:
        for query in queries:
            query.stop()
        reporter.report(queries[0])
        if publisher:
            publisher.close()
    return summary


class JobThread(threading.Thread):
    """The job's own loop (`job.run_job`) on the shared session, in a thread: what the command
    line runs after its checks, with `wait_for_topic` first when asked. Setting `signals.stop`
    does what SIGTERM does to the command line; `out` holds the lines the job printed."""

    def __init__(self, spark, config: AggregatorConfig, wait_for_the_topic: bool = False):
        super().__init__(daemon=True)
        self.spark, self.config, self.wait_for_the_topic = spark, config, wait_for_the_topic
        self.signals, self.out = JobSignals(), io.StringIO()
        self.summary: JobSummary | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        config = self.config
        try:
            if self.wait_for_the_topic:
                wait_for_topic(config.bootstrap_servers, config.topic, config.security, self.signals, config.timeout_s, out=self.out)
            self.summary = run_job(config, self.signals, self.out, spark=self.spark)
        except BaseException as exc:  # raised again in the test's thread by result()
            self.error = exc

    def result(self, timeout_s: float = 180) -> JobSummary:
        self.join(timeout_s)
        if self.is_alive():
            self.signals.stop.set()
            self.join(60)
            raise AssertionError(f"the job did not end within {timeout_s:.0f}s:\n{self.out.getvalue()[-3000:]}")
        if self.error:
            raise self.error
        return self.summary


def run_aggregator(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """The real entry point, as `make spark-consume-purchase` runs it."""
    proc = subprocess.run(
        [sys.executable, str(AGGREGATOR), "--master", "local[2]", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=CHILD_ENV,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"aggregator exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def start_streaming_job(*args: str) -> subprocess.Popen:
    """The aggregator command line in the background, in its own process group (kill it with
    os.killpg), without the console table; stderr is piped."""
    return subprocess.Popen(
        [sys.executable, str(AGGREGATOR), "--master", "local[2]", "--no-console", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=CHILD_ENV,
        start_new_session=True,
    )


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # from the start to the exit


class Background:
    """A command line run in the background while other work goes on: `result()` waits for
    its exit and gives its code, its output and how long it ran."""

    def __init__(self, argv: list[str], timeout_s: float = 120):
        self.timeout_s, self.started = timeout_s, time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=CHILD_ENV)
        self._finished: Finished | None = None
        self._reader = threading.Thread(target=self._wait, daemon=True)
        self._reader.start()

    def _wait(self) -> None:
        out, err = self.proc.communicate()
        self._finished = Finished(self.proc.returncode, out, err, time.monotonic() - self.started)

    def result(self) -> Finished:
        self._reader.join(max(0.0, self.started + self.timeout_s - time.monotonic()))
        if self._finished is None:
            self.proc.kill()
            self._reader.join()
            raise AssertionError(f"{self.proc.args} did not end within {self.timeout_s:.0f}s")
        return self._finished


def start_producer(*args: str) -> subprocess.Popen:
    """The producer command line in the background; stdout and stderr together in one pipe."""
    return subprocess.Popen([sys.executable, str(PRODUCER), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def wait_for_line(producer: subprocess.Popen, needle: str, what: str | None = None) -> str:
    """Read a start_producer child's lines until one holds `needle`; returns the lines read."""
    lines = []
    for line in producer.stdout:
        lines.append(line)
        if needle in line:
            return "".join(lines)
    raise AssertionError(f"the producer ended before {what or repr(needle)}:\n{''.join(lines)}")


def wait_for_acknowledgements(producer: subprocess.Popen) -> str:
    """Read the producer's lines (it runs with --progress-interval-s) until a progress line says
    the broker acknowledged events: it is connected and sending. Returns the lines read."""
    seen = ""
    while not any(line.startswith("sent ") and "acknowledged 0," not in line for line in seen.splitlines()):
        seen += wait_for_line(producer, "acknowledged", "any acknowledgement")
    return seen


def run_producer(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(PRODUCER), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"producer exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def send_raw(bootstrap: str, topic: str, values: list[tuple[bytes | None, int]]) -> None:
    """Send exact bytes (value, partition); None is a tombstone (needs a key)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, (value, partition) in enumerate(values):
        producer.send(topic, value=value, key=f"k{i}".encode(), partition=partition)
    producer.flush()
    producer.close()


def expected_totals(events: list[dict], window_s: int = DEFAULT_WINDOW_S) -> dict[str, tuple[int, int]]:
    """Per-window (total_purchase, orders) computed in plain Python, independent of Spark."""
    return window_totals(events, window_s)


def produced_events(bootstrap: str, topic: str) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(bootstrap, topic)]
