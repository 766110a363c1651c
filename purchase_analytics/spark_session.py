"""The SparkSession every Spark entry point uses, local or on a standalone master."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyspark
from py4j.protocol import Py4JError
from pyspark import SparkConf, SparkContext
from pyspark.java_gateway import launch_gateway
from pyspark.sql import SparkSession

from .config import PROJECT_ROOT
from .defaults import setting
from .jvm import AOT_CACHE_JDK, class_archive_file, class_archive_options, installed_jdk
from .options import memory_size
from .transform import EVENT_SCHEMA, WIRE_EVENT_FUNCTION


@dataclass(frozen=True)
class SparkConfig:
    """Session settings shared by every Spark entry point, read once from the settings
    (.env, then the environment). The paths are filled by `make jars` / `make package`; in
    the Docker image the connector jars sit in pyspark's own jars folder instead."""

    log_level: str
    ui_enabled: bool
    connector_jars_dir: Path
    package_zip: Path  # executors on a standalone worker import the package from it (--py-files)
    log4j_config: Path
    driver_java_options: str  # extra JVM options of the driver (local mode: the whole Spark JVM)
    driver_memory: str | None = None  # spark.driver.memory (the driver JVM's heap); None: Spark's default
    class_archive: Path | None = None  # the JVM class archive to map when it exists (runtime/class_archive.py)
    java_home: Path | None = None  # the JDK of the Spark JVMs (SPARK_JAVA_HOME); None: JAVA_HOME or `java` on PATH

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> SparkConfig:
        def path(name: str) -> Path:
            return PROJECT_ROOT / setting(settings, name)  # an absolute value wins over the root

        driver_memory = setting(settings, "SPARK_DRIVER_MEMORY")
        if driver_memory:
            try:
                driver_memory = memory_size(driver_memory)
            except ValueError as exc:  # one line, like a bad option of any entry point
                raise SystemExit(f"error: SPARK_DRIVER_MEMORY (from the environment or .env): {exc}") from None
        java_home = spark_java_home(setting(settings, "SPARK_JAVA_HOME"))
        archive_on = setting(settings, "SPARK_CLASS_ARCHIVE").lower() == "true"
        return cls(
            driver_memory=driver_memory or None,
            log_level=setting(settings, "SPARK_LOG_LEVEL"),
            ui_enabled=setting(settings, "SPARK_UI_ENABLED").lower() == "true",
            connector_jars_dir=path("SPARK_CONNECTOR_JARS_DIR"),
            package_zip=path("PACKAGE_ZIP"),
            log4j_config=PROJECT_ROOT / "build" / "log4j2-spark.properties",
            driver_java_options=setting(settings, "SPARK_DRIVER_JAVA_OPTIONS").strip(),
            class_archive=class_archive_path(java_home) if archive_on else None,
            java_home=java_home,
        )

    def java_options(self) -> list[str]:
        """The driver JVM's options: the log4j configuration, the class archive when there
        is one (a stale or foreign archive is skipped without a word: it only costs
        start-up time), then SPARK_DRIVER_JAVA_OPTIONS."""
        options = [f"-Dlog4j2.configurationFile=file:{self.log4j_config}"] if self.log4j_config.exists() else []
        if self.class_archive and self.class_archive.is_file():
            options += class_archive_options(self.class_archive)
        return options + self.driver_java_options.split()

    @contextmanager
    def launching(self) -> Iterator[None]:
        """While a Spark JVM is launched (pyspark's gateway, spark-class): JAVA_HOME names
        java_home, which Spark's launch scripts run. Only then: a broker this process starts
        later runs on the default JDK, whose class archive it has."""
        before = os.environ.get("JAVA_HOME")
        if self.java_home:
            os.environ["JAVA_HOME"] = str(self.java_home)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("JAVA_HOME", None)
            else:
                os.environ["JAVA_HOME"] = before


def spark_java_home(value: str) -> Path | None:
    """SPARK_JAVA_HOME: `auto` is an installed JDK AOT_CACHE_JDK (25, which Spark 4.2 runs
    on), whose class archive is an ahead-of-time cache, or None when there is none; `default`
    (or unset) is None; anything else is a JDK's home, which must have bin/java. None: JAVA_HOME
    or `java` on PATH, as for every other JVM."""
    value = value.strip()
    if value.lower() == "auto":
        return installed_jdk(AOT_CACHE_JDK)
    if value.lower() in ("", "default"):
        return None
    if not (Path(value) / "bin" / "java").is_file():
        raise SystemExit(
            f"error: SPARK_JAVA_HOME={value} (from the environment or .env) has no bin/java: set a JDK's home, auto or default"
        )
    return Path(value)


def class_archive_path(java_home: Path | None = None) -> Path | None:
    """Where the class archive of the installed Spark and the JDK that runs it (java_home's,
    else the default `java`) lives (runtime/class_archive.py builds it), shared by every
    checkout whose .venv uses the same installed packages (build/cached-venv.sh). None without
    a `java`: Spark then fails at start with its own message."""
    java = str(java_home / "bin" / "java") if java_home else None  # None: ensure_java's
    try:
        return class_archive_file(f"spark-{pyspark.__version__}", Path(pyspark.__file__).resolve().parent, java=java)
    except RuntimeError:
        return None


def under_spark_submit() -> bool:
    """pyspark runs inside spark-submit (client mode): spark-submit started the driver JVM with its own
    options (--master, --jars, --py-files, --driver-memory, ...) and handed pyspark its gateway."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT"))


def submitted_master() -> str | None:
    """The master spark-submit was given, when the job runs under spark-submit; else None."""
    if not under_spark_submit():
        return None
    SparkContext._ensure_initialized()  # attaches to spark-submit's JVM: nothing is launched
    return SparkConf().get("spark.master", None)


def create_spark_session(
    app_name: str, master: str | None, shuffle_partitions: int, session_timezone: str, config: SparkConfig
) -> SparkSession:
    """A session on `master`, in a driver JVM launched here with the settings of `config`. Under
    spark-submit the driver JVM is spark-submit's: its master, jars, Python files and driver
    options rule, and only the session's SQL and UI settings are set here."""
    submitted = under_spark_submit()
    if not submitted and (not master or master.startswith("local") or "//localhost" in master or "//127.0.0.1" in master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # everything we start listens on localhost
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", session_timezone)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", str(config.ui_enabled).lower())
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.sql.adaptive.enabled", "false")  # not supported by stateful streaming anyway
        # PySpark's DataFrame debugging sends every column function's Python call site to
        # the JVM first (ten more py4j round trips each): 40% of the time the job's batch
        # handler spent building a micro-batch's DataFrame (99 against 60 ms, in a profile).
        .config("spark.python.sql.dataFrameDebugging.enabled", "false")
    )
    if submitted:
        return _started(builder.getOrCreate(), config)
    if master:
        builder = builder.master(master)
    if config.driver_memory:  # read when the driver JVM is launched, i.e. by the first session of a process
        builder = builder.config("spark.driver.memory", config.driver_memory)
    jars = sorted(str(p) for p in config.connector_jars_dir.glob("*.jar"))
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    if config.package_zip.exists():
        builder = builder.config("spark.submit.pyFiles", str(config.package_zip))
    java_options = config.java_options()
    if java_options:
        builder = builder.config("spark.driver.extraJavaOptions", " ".join(java_options))
    try:
        with config.launching():
            launch_quiet_gateway(builder)
            spark = builder.getOrCreate()
    except Py4JError as exc:
        if "INVALID_DRIVER_MEMORY" not in str(exc):
            raise
        raise SystemExit(
            f"error: SPARK_DRIVER_MEMORY={config.driver_memory} is too small for Spark: it needs a heap the JVM reports as at "
            f"least 450 MB (with -XX:+UseParallelGC in SPARK_DRIVER_JAVA_OPTIONS, at least 560m); set it in .env or the environment"
        ) from None
    return _started(spark, config)


def _started(spark: SparkSession, config: SparkConfig) -> SparkSession:
    spark.sparkContext.setLogLevel(config.log_level)
    register_wire_parser(spark)
    return spark


def register_wire_parser(spark: SparkSession) -> None:
    """Register the job's wire parser (jvm/) as WIRE_EVENT_FUNCTION, transform.parse_events'
    fast path. `make jars` builds its jar into the connector jars' folder, so it reaches the
    driver and every executor (and the Docker image) with them. Without it every message
    takes the full checks: the same results, more CPU."""
    try:
        spark._jvm.purchase_analytics.WireEvent.register(spark._jsparkSession, WIRE_EVENT_FUNCTION, EVENT_SCHEMA)
    except Py4JError:
        print(
            "note: the job's wire parser (purchase_analytics.WireEvent) is not on Spark's classpath; every message takes the "
            "full checks (slower). `make jars` builds it into SPARK_CONNECTOR_JARS_DIR.",
            file=sys.stderr,
            flush=True,
        )


# Spark's launcher gives every driver JVM --add-modules=jdk.incubator.vector (JavaModuleOptions, after
# every option of ours, so no setting can take it away), and the JVM then prints this line at each start:
# the one line of the driver's stderr that is not passed on.
INCUBATOR_WARNING = b"WARNING: Using incubator modules: jdk.incubator.vector\n"


def launch_quiet_gateway(builder) -> None:
    """Start the driver JVM as getOrCreate would, its stderr copied to ours but for INCUBATOR_WARNING."""
    if SparkContext._gateway is not None:
        return
    conf = SparkConf()
    for key, value in builder._options.items():
        conf.set(key, value)
    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})

    def copy(stream) -> None:
        for line in iter(stream.readline, b""):
            if line != INCUBATOR_WARNING:
                sys.stderr.buffer.write(line)
                sys.stderr.flush()

    threading.Thread(target=copy, args=(gateway.proc.stderr,), daemon=True, name="driver-stderr").start()
    SparkContext._ensure_initialized(gateway=gateway, conf=conf)
