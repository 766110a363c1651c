"""spark_session.py: the settings a session takes (SparkConfig) and what create_spark_session
does with them, checked on the tests' own session, which it created."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from purchase_analytics.config import PROJECT_ROOT, load_settings, user_cache_dir
from purchase_analytics.jvm import AOT_CACHE_JDK, ensure_java, installed_jdk, jdk_feature
from purchase_analytics.spark_session import SparkConfig, class_archive_path, spark_java_home

from conftest import CHILD_ENV, SETTINGS, TEST_JVM_OPTIONS


def test_settings_are_read_once_and_relative_paths_are_under_the_project():
    config = SparkConfig.from_settings(
        {
            "SPARK_LOG_LEVEL": "ERROR",
            "SPARK_UI_ENABLED": "True",
            "SPARK_CONNECTOR_JARS_DIR": "jars/here",
            "PACKAGE_ZIP": "/opt/pkg.zip",  # an absolute path wins over the project root
            "SPARK_DRIVER_JAVA_OPTIONS": " -Xmx2g  ",
        }
    )
    assert (config.log_level, config.ui_enabled, config.driver_java_options) == ("ERROR", True, "-Xmx2g")
    assert config.connector_jars_dir == PROJECT_ROOT / "jars" / "here" and str(config.package_zip) == "/opt/pkg.zip"
    from_dot_env = SparkConfig.from_settings(load_settings(environ={}))
    assert not from_dot_env.ui_enabled  # .env: no UI, the parallel GC
    assert "-XX:+UseParallelGC" in from_dot_env.driver_java_options.split()
    assert from_dot_env.connector_jars_dir == PROJECT_ROOT / SETTINGS["SPARK_CONNECTOR_JARS_DIR"]


@pytest.mark.parametrize(
    "setting",
    ["SPARK_DRIVER_JAVA_OPTIONS", "KAFKA_BROKER_JAVA_OPTIONS", "BENCH_SPARK_DRIVER_JAVA_OPTIONS", "BENCH_KAFKA_BROKER_JAVA_OPTIONS"],
)
def test_the_jdk_takes_every_jvm_option_of_dot_env(setting):
    """The tests' Spark and brokers have options of their own; .env's (the collectors, and
    the benchmark's JIT tuning) start every user's job and broker, or the benchmark's, so
    the JDK that runs each must take every option with the value written there."""
    settings = load_settings(environ={})
    config = SparkConfig.from_settings(settings)
    spark = setting.endswith("SPARK_DRIVER_JAVA_OPTIONS")
    java = str(config.java_home / "bin" / "java") if spark and config.java_home else ensure_java()
    options = settings[setting].split()
    run = subprocess.run([java, *options, "-XX:+PrintFlagsFinal", "-version"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    final = dict(re.findall(r"^\s*\S+\s+(\w+)\s+:?= (\S+)", run.stdout, re.MULTILINE))  # type, name, value
    written = dict(_flag(option) for option in options if option.startswith("-XX:"))
    assert written and {name: final.get(name) for name in written} == written


def _flag(option: str) -> tuple[str, str]:
    """-XX:Name=value, -XX:+Name or -XX:-Name as (name, value), as -XX:+PrintFlagsFinal shows it."""
    name, _, value = option.removeprefix("-XX:").partition("=")
    return (name, value) if value else (name[1:], str(name[0] == "+").lower())


def test_the_session_has_the_settings_the_jars_and_the_jvm_options(spark):
    conf = spark.sparkContext.getConf()
    assert spark.conf.get("spark.sql.shuffle.partitions") == SETTINGS["SHUFFLE_PARTITIONS"]
    assert spark.conf.get("spark.sql.session.timeZone") == SETTINGS["SESSION_TIMEZONE"]
    assert conf.get("spark.ui.enabled") == "false" and spark.sparkContext.uiWebUrl is None
    assert conf.get("spark.sql.streaming.stopGracefullyOnShutdown") == "true"
    jars = conf.get("spark.jars").split(",")
    assert any("spark-sql-kafka-0-10" in jar for jar in jars)  # Spark's own Kafka connector, from .cache/jars
    java_options = conf.get("spark.driver.extraJavaOptions").split()
    assert f"-Dlog4j2.configurationFile=file:{PROJECT_ROOT / 'build' / 'log4j2-spark.properties'}" in java_options
    assert java_options[-len(TEST_JVM_OPTIONS) :] == list(TEST_JVM_OPTIONS)  # after Spark's own defaults
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert set(TEST_JVM_OPTIONS) <= set(runtime.getInputArguments())  # the JVM really runs with them
    assert os.environ["SPARK_LOCAL_IP"] == "127.0.0.1"  # a local master listens on localhost only


def test_the_class_archive_is_one_per_installed_spark_and_jdk_and_optional(tmp_path):
    archive = class_archive_path()
    assert archive.parent == user_cache_dir() / "jvm" and archive.name.startswith(f"spark-{pyspark.__version__}-")
    assert SparkConfig.from_settings({"SPARK_CLASS_ARCHIVE": "false"}).class_archive is None
    config = SparkConfig.from_settings({"SPARK_CLASS_ARCHIVE": "true", "SPARK_DRIVER_JAVA_OPTIONS": "-Xss2m"})
    assert config.class_archive == archive
    missing = dataclasses.replace(config, class_archive=tmp_path / "none.jsa")
    assert not any("SharedArchiveFile" in option for option in missing.java_options())  # none yet: Spark starts as before
    (tmp_path / "some.jsa").write_bytes(b"")
    present = dataclasses.replace(config, class_archive=tmp_path / "some.jsa")
    assert present.java_options()[-3:] == [f"-XX:SharedArchiveFile={tmp_path / 'some.jsa'}", "-Xlog:cds*=off", "-Xss2m"]


def test_spark_runs_on_the_jdk_spark_java_home_names(tmp_path, monkeypatch):
    assert spark_java_home("auto") == installed_jdk(AOT_CACHE_JDK)  # a JDK 25 when one is installed, else the default
    assert spark_java_home("default") is None and spark_java_home("") is None
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "java").write_text("")
    assert spark_java_home(str(tmp_path)) == tmp_path
    with pytest.raises(SystemExit, match=r"^error: SPARK_JAVA_HOME=/nowhere \(from the environment or \.env\) has no bin/java"):
        spark_java_home("/nowhere")
    config = SparkConfig.from_settings({"SPARK_JAVA_HOME": str(tmp_path), "SPARK_CLASS_ARCHIVE": "true"})
    assert config.java_home == tmp_path and config.class_archive == class_archive_path(tmp_path) != class_archive_path()
    monkeypatch.setenv("JAVA_HOME", "/before")
    with config.launching():  # only while a Spark JVM starts: a broker started later keeps the default JDK
        assert os.environ["JAVA_HOME"] == str(tmp_path)
    assert os.environ["JAVA_HOME"] == "/before"
    monkeypatch.delenv("JAVA_HOME")
    with config.launching():
        pass
    assert "JAVA_HOME" not in os.environ


def test_the_session_jvm_runs_on_the_spark_jdk(spark):
    """The tests' own session runs on the JDK .env's SPARK_JAVA_HOME names (`default`: the
    default `java`), and its class archive is of the kind that JDK maps."""
    config = SparkConfig.from_settings(SETTINGS)
    java_home = Path(spark.sparkContext._jvm.java.lang.System.getProperty("java.home"))
    expected = config.java_home or Path(os.environ.get("JAVA_HOME") or shutil.which("java")).resolve().parent.parent
    assert java_home.resolve() == expected.resolve()
    if config.class_archive:
        assert config.class_archive.suffix == (".aot" if jdk_feature(java_home / "bin" / "java") >= AOT_CACHE_JDK else ".jsa")


def test_the_session_jvm_maps_the_class_archive(spark):
    """`make test` builds the archive first (make setup), so the tests' own JVM maps it: the
    JVM's mapped class data is most of the archive (a CDS archive comes with the JDK's own,
    about 15 MB; an ahead-of-time cache replaces it, and leaves its heap objects unmapped)."""
    archive = SparkConfig.from_settings(SETTINGS).class_archive
    assert archive is not None and archive.is_file(), f"no class archive at {archive}: make class-archive builds it"
    pid = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getPid()
    jcmd = Path(spark.sparkContext._jvm.java.lang.System.getProperty("java.home")) / "bin" / "jcmd"
    info = subprocess.run([str(jcmd), str(pid), "VM.info"], capture_output=True, text=True, timeout=60).stdout
    mapped = re.search(r"CDS archive\(s\) mapped at: .*size (\d+)", info)
    assert mapped, info[:2000]
    assert int(mapped.group(1)) > archive.stat().st_size * 0.9


@pytest.mark.spark
def test_a_heap_spark_refuses_is_one_line_naming_the_setting():
    """With the parallel collector a 480m heap reports less than Spark's 450 MB minimum: the
    session's start names SPARK_DRIVER_MEMORY and the fix, not a py4j error."""
    code = (
        "from purchase_analytics.config import load_settings\n"
        "from purchase_analytics.spark_session import SparkConfig, create_spark_session\n"
        "create_spark_session('t', 'local[1]', 1, 'UTC', SparkConfig.from_settings(load_settings()))\n"
    )
    env = {**os.environ, "SPARK_DRIVER_MEMORY": "480m", "SPARK_DRIVER_JAVA_OPTIONS": "-XX:+UseParallelGC -XX:TieredStopAtLevel=1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith("error: SPARK_DRIVER_MEMORY=480m is too small for Spark"), proc.stderr[-2000:]


@pytest.mark.spark
@pytest.mark.skipif(installed_jdk(AOT_CACHE_JDK) is None, reason=f"no JDK {AOT_CACHE_JDK} installed under /usr/lib/jvm")
def test_spark_java_home_auto_runs_a_job_on_the_installed_jdk_25():
    """SPARK_JAVA_HOME=auto, as a user sets it: the session's JVM is the installed JDK 25's,
    it runs a query, and JAVA_HOME is the caller's again afterwards."""
    code = (
        "import os\n"
        "from purchase_analytics.config import load_settings\n"
        "from purchase_analytics.spark_session import SparkConfig, create_spark_session\n"
        "spark = create_spark_session('t', 'local[1]', 1, 'UTC', SparkConfig.from_settings(load_settings()))\n"
        "system = spark.sparkContext._jvm.java.lang.System\n"
        "print(system.getProperty('java.specification.version'), system.getProperty('java.home'))\n"
        "print(spark.range(1000).selectExpr('sum(id)').first()[0], os.environ.get('JAVA_HOME', '-'))\n"
    )
    env = {**CHILD_ENV, "SPARK_JAVA_HOME": "auto"}
    env.pop("JAVA_HOME", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    version, home = proc.stdout.splitlines()[0].split()
    assert (version, Path(home)) == (str(AOT_CACHE_JDK), installed_jdk(AOT_CACHE_JDK))
    assert proc.stdout.splitlines()[1] == "499500 -"
