import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dotenv import dotenv_values

from purchase_analytics.config import load_settings, parse_aggregator_config, parse_producer_config
from purchase_analytics.dashboard.__main__ import parse_args as dashboard_args
from purchase_analytics.defaults import DEFAULTS
from purchase_analytics.spark_session import SparkConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text("KAFKA_TOPIC_NAME=from-dotenv\nPRODUCER_RATE=5\nWINDOW_DURATION=10 minutes\n")
    return path


def test_precedence_cli_then_env_then_dotenv_then_default(env_file):
    settings = load_settings(env_file, environ={"PRODUCER_RATE": "7"})
    assert parse_producer_config([], settings).topic == "from-dotenv"  # .env over default
    assert parse_producer_config([], settings).rate == 7.0  # environment over .env
    assert parse_producer_config(["--rate", "9"], settings).rate == 9.0  # CLI over environment
    assert parse_producer_config([], settings).count == 0  # default when nowhere else
    assert parse_aggregator_config([], settings).window_duration == "10 minutes"


def test_empty_environment_value_counts_as_unset(env_file):
    settings = load_settings(env_file, environ={"KAFKA_TOPIC_NAME": ""})
    assert parse_producer_config([], settings).topic == "from-dotenv"


def test_bad_values_are_reported_not_raised(env_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_producer_config(["--late-fraction", "2"], load_settings(env_file, environ={}))
    assert exit_info.value.code == 2
    assert "must be between 0 and 1" in capsys.readouterr().err


READ_PATTERNS = (
    re.compile(r'(?:add_)?setting\(\s*"[^"]+",\s*"([A-Z][A-Z0-9_]*)"'),  # SettingsParser options
    re.compile(r'settings(?:\.get\(|\[)\s*"([A-Z][A-Z0-9_]*)"'),  # settings["X"], settings.get("X")
    re.compile(r'(?:setting|setting_or_default|int_setting|path)\(\s*(?:settings,\s*)?"([A-Z][A-Z0-9_]*)"'),  # setting(settings, "X")
)


def keys_read_by_the_code() -> set[str]:
    """Every setting name the Python code reads."""
    keys: set[str] = set()
    for path in [*(ROOT / "purchase_analytics").rglob("*.py"), *(ROOT / "bench").glob("*.py"), *(ROOT / "docker").glob("*.py")]:
        text = path.read_text()
        for pattern in READ_PATTERNS:
            keys.update(pattern.findall(text))
    return keys


# Read by the code but, on purpose, with no default anywhere.
NO_DEFAULT = {
    "KAFKA_SASL_PASSWORD": "a secret: from the environment, or KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_TLS_DIR": "derived from the project's data folder (docker/docker.mk)",
}


def test_every_setting_the_code_reads_has_one_default_written_once():
    """One source of truth: each default is written in the package (defaults.py), or, for what make and docker
    compose need besides (versions, images, the Docker project), in .env; never in both."""
    in_dot_env = set(dotenv_values(ROOT / ".env"))
    read = keys_read_by_the_code()
    assert len(read) > 45  # the scan found the settings
    assert sorted(read - DEFAULTS.keys() - in_dot_env - NO_DEFAULT.keys()) == []
    assert sorted(DEFAULTS.keys() & in_dot_env) == []
    assert not NO_DEFAULT.keys() & (in_dot_env | DEFAULTS.keys())


def test_the_same_defaults_with_or_without_dot_env():
    """A program started where there is no .env (the --py-files zip on a cluster, a container) has the
    defaults the project's own runs have: the dead-letter, results and metrics topics on."""
    with_dot_env, without = load_settings(environ={}), load_settings(None, environ={})
    assert with_dot_env.items() >= without.items()
    assert parse_aggregator_config([], without) == parse_aggregator_config([], with_dot_env)
    assert parse_producer_config([], without) == parse_producer_config([], with_dot_env)
    assert dashboard_args([], without) == dashboard_args([], with_dot_env)
    config = parse_aggregator_config([], without)
    assert (config.dlq_topic, config.results_topic, config.metrics_topic) == (
        "test-topic-dlq",
        "purchase-window-totals",
        "purchase-pipeline-metrics",
    )
    assert parse_aggregator_config(["--dlq-topic", ""], without).dlq_topic is None  # off only when asked
    spark_with, spark_without = SparkConfig.from_settings(with_dot_env), SparkConfig.from_settings(without)
    assert spark_with == spark_without
    assert (spark_without.driver_memory, spark_without.driver_java_options) == ("560m", "-XX:+UseParallelGC")


def test_make_reads_the_package_defaults_as_written():
    """`python -m purchase_analytics.defaults` (the Makefile's include, docker compose's --env-file) prints
    every default once, on a Python without site-packages (-S: what make runs has no venv yet)."""
    proc = subprocess.run([sys.executable, "-S", "-m", "purchase_analytics.defaults"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert dict(line.split("=", 1) for line in proc.stdout.splitlines()) == DEFAULTS


def test_project_env_file_is_complete():
    """Every setting the entry points read has a value, from the package's defaults or the committed .env."""
    settings = load_settings(environ={})
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_TOPIC_NAME",
        "KAFKA_DLQ_TOPIC_NAME",
        "WINDOW_DURATION",
        "WATERMARK_DELAY",
        "TRIGGER_INTERVAL",
        "OUTPUT_MODE",
        "CHECKPOINT_DIR",
        "KAFKA_VERSION",
    ):
        assert settings.get(name), name
    config = parse_aggregator_config([], settings)
    assert config.output_mode == "update" and config.starting_offsets == "earliest" and config.session_timezone == "UTC"
    assert config.max_poll_records == int(settings["KAFKA_MAX_POLL_RECORDS"]) == 10_000


@pytest.mark.parametrize(
    "master",
    [
        "local",
        "local[1]",
        "local[*]",
        "local[4,2]",
        "local[*, 3]",
        "spark://host:7077",
        "spark://a:7077,b.example:7078",
        "k8s://https://h:6443",
        "yarn",
    ],
)
def test_spark_master_urls_that_spark_takes(master):
    assert parse_aggregator_config(["--master", master], {}).master == master


@pytest.mark.parametrize(
    "option,value",
    [
        ("--master", "lcoal[2]"),
        ("--master", "local[0]"),
        ("--master", "local[two]"),
        ("--master", "spark://host"),
        ("--master", "spark://host:99999"),
        ("--master", "k8s://"),
        ("--master", "YARN"),
        ("--starting-offsets", "earlist"),
        ("--starting-offsets", '{"test-topic": {"0": "23"}}'),
        ("--starting-offsets", '{"test-topic": {"p0": 23}}'),
        ("--starting-offsets", '{"test-topic": {"0": -3}}'),
        ("--starting-offsets", '{"test-topic": {}}'),
        ("--starting-offsets", '{"other-topic": {"0": 5}}'),  # the job reads test-topic
        ("--starting-offsets", '{"test-topic": {"0": 5}'),
        ("--session-timezone", "Mars/Olympus"),
        ("--session-timezone", "+05:30"),
        ("--session-timezone", "+19:00"),
        ("--session-timezone", "../etc/passwd"),
    ],
)
def test_a_bad_master_starting_offset_or_time_zone_is_one_line_before_any_jvm(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_aggregator_config([option, value, "--topic", "test-topic"], {})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and option in err


def test_a_bad_value_in_the_environment_names_the_setting(capsys):
    for name in ("SPARK_MASTER_URL", "STARTING_OFFSETS", "SESSION_TIMEZONE"):
        with pytest.raises(SystemExit) as exit_info:
            parse_aggregator_config([], {name: "nonsense"})
        assert exit_info.value.code == 2 and f"{name}='nonsense'" in capsys.readouterr().err


def test_starting_offsets_earliest_latest_or_json_per_partition():
    offsets = '{"purchases": {"0": 23, "1": -2, "2": -1}}'
    assert parse_aggregator_config(["--starting-offsets", "latest"], {}).starting_offsets == "latest"
    assert parse_aggregator_config(["--topic", "purchases", "--starting-offsets", offsets], {}).starting_offsets == offsets


@pytest.mark.parametrize(
    "zone,as_given_to_spark",
    [
        ("UTC", "UTC"),
        ("Europe/Paris", "Europe/Paris"),
        ("Z", "UTC"),
        ("+00:00", "UTC"),
        ("+01:00", "Etc/GMT-1"),
        ("-5", "Etc/GMT+5"),
        ("GMT+14", "Etc/GMT-14"),
    ],
)
def test_session_time_zone_a_name_or_an_offset_the_console_sink_can_read_too(zone, as_given_to_spark):
    config = parse_aggregator_config(["--session-timezone", zone], {})
    assert config.session_timezone == as_given_to_spark
    ZoneInfo(config.session_timezone)  # the console sink's zone
