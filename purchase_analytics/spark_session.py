"""The SparkSession every Spark entry point uses, local or on a standalone master."""
from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import SparkSession

from .config import PROJECT_ROOT

# Filled by `make jars` / `make package`. In the Docker image the connector jars sit in
# pyspark's own jars folder instead, and these paths do not exist.
CONNECTOR_JARS_DIR = Path(os.environ.get("SPARK_CONNECTOR_JARS_DIR", PROJECT_ROOT / ".cache" / "jars" / "spark-kafka"))
PACKAGE_ZIP = Path(os.environ.get("PACKAGE_ZIP", PROJECT_ROOT / ".cache" / "purchase_analytics.zip"))
LOG4J_CONFIG = PROJECT_ROOT / "build" / "log4j2-spark.properties"


def create_spark_session(app_name: str, master: str | None = None, shuffle_partitions: int = 2, session_timezone: str = "UTC") -> SparkSession:
    if not master or master.startswith("local") or "//localhost" in master or "//127.0.0.1" in master:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # everything we start listens on localhost
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", session_timezone)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", os.environ.get("SPARK_UI_ENABLED", "false"))
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.sql.adaptive.enabled", "false")  # not supported by stateful streaming anyway
    )
    if master:
        builder = builder.master(master)
    jars = sorted(str(p) for p in CONNECTOR_JARS_DIR.glob("*.jar"))
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    if PACKAGE_ZIP.exists():
        # Executors on a standalone worker import the package from this zip.
        builder = builder.config("spark.submit.pyFiles", str(PACKAGE_ZIP))
    if LOG4J_CONFIG.exists():
        builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark
