"""A secured broker, for real: SASL_SSL with SCRAM-SHA-512, a local CA, StandardAuthorizer
with ACLs. The producer and the Spark job run as different users through the real entry
points; denied operations fail with one line naming the cause, allowed ones work, and no
password shows up in any output, log, checkpoint or results file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import browser, wait_for_text  # noqa: F401
from kafka.errors import TopicAuthorizationFailedError
from readers import read_results_db

from purchase_analytics.admin import create_topics
from purchase_analytics.dashboard.feed import FeedTopics, KafkaFeed
from purchase_analytics.kafka_client import KafkaSecurity
from purchase_analytics.reference import read_topic
from purchase_analytics.runtime import kafka_security
from purchase_analytics.runtime.kafka_broker import KafkaBroker
from purchase_analytics.runtime.processes import free_port, wait_until
from purchase_analytics.sinks import read_json_lines_totals

from conftest import AGGREGATOR, CHILD_ENV, PRODUCER, ROOT, expected_totals, own_broker
from malformed import MALFORMED

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.kafka, pytest.mark.spark]

TOPIC, DLQ, RESULTS, METRICS = "purchases", "purchases-dlq", "purchase-window-totals", "purchase-pipeline-metrics"
EVENTS = 700


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    data = tmp_path_factory.mktemp("kafka-secured")
    broker = own_broker(data, heap="512m", tls_dir=data / "tls", internal_port=free_port())
    broker.start()
    try:
        create_topics(broker.admin_bootstrap, {TOPIC: 3, DLQ: 1, RESULTS: 1, METRICS: 1}, security=broker.admin_security())
        kafka_security.create_users(broker.admin_bootstrap, broker.tls_dir)
        kafka_security.create_acls(broker.admin_bootstrap, broker.tls_dir, TOPIC, [DLQ, RESULTS, METRICS])
        yield broker
    finally:
        broker.stop()


def client_env(broker: KafkaBroker, user: str, password_file: Path | None = None) -> dict[str, str]:
    """What a user exports: the password goes by file, never on a command line."""
    return {
        **CHILD_ENV,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD_FILE": str(password_file or kafka_security.user_password(broker.tls_dir, user)),
        "KAFKA_SSL_CA_LOCATION": str(broker.tls_dir / "ca.pem"),
    }


def start(script: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    proc.started_at = time.monotonic()
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str, float]:
    """Exit code, stdout, stderr and seconds since the process started."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err, time.monotonic() - proc.started_at


def test_producer_and_job_as_different_users_with_acls_both_ways(secured, tmp_path):
    broker = secured
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    producer_env, job_env, ui_env = (client_env(broker, u) for u in ("producer", "job", "ui"))
    # Allowed: the producer writes the purchase topic (real events, then malformed bytes for the dead letters).
    produced = finish(start(PRODUCER, producer_env, "--topic", TOPIC, "--rate", "0", "--count", str(EVENTS), "--seed", "41"))
    assert produced[0] == 0 and f"done: sent {EVENTS}, acknowledged {EVENTS}, failed 0" in produced[1], produced
    send_as(
        kafka_security.client_security(broker.tls_dir, "producer"),
        broker.bootstrap_servers,
        [payload for payload, _ in MALFORMED if payload is not None],
    )

    out_dir, db, ckpt = tmp_path / "out", tmp_path / "results.db", tmp_path / "ckpt"
    job = start(
        AGGREGATOR,
        job_env,
        "--master",
        "local[2]",
        "--topic",
        TOPIC,
        "--dlq-topic",
        DLQ,
        "--available-now",
        "--checkpoint",
        str(ckpt),
        "--output-dir",
        str(out_dir),
        "--results-db",
        str(db),
        "--no-console",
    )
    # Denied, while the job runs: each one line naming the cause and a non-zero exit, not a retry
    # until killed (finish's timeout; the seconds are printed, never asserted on a shared machine).
    denied = {
        "wrong password": start(PRODUCER, client_env(broker, "producer", wrong), "--topic", TOPIC, "--count", "10"),
        "unknown user": start(PRODUCER, client_env(broker, "mallory", wrong), "--topic", TOPIC, "--count", "10"),
        "plaintext client": start(
            PRODUCER,
            {**CHILD_ENV, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
            "--topic",
            TOPIC,
            "--count",
            "10",
        ),
        "job writes purchases": start(PRODUCER, job_env, "--topic", TOPIC, "--count", "10", "--rate", "0"),
        "ui writes purchases": start(PRODUCER, ui_env, "--topic", TOPIC, "--count", "10", "--rate", "0"),
        "producer writes dead letters": start(PRODUCER, producer_env, "--topic", DLQ, "--count", "10", "--rate", "0"),
        "job with a wrong password": start(
            AGGREGATOR, client_env(broker, "job", wrong), "--topic", TOPIC, "--available-now", "--checkpoint", str(tmp_path / "denied-ckpt")
        ),
    }
    expected_cause = {
        "wrong password": "error: authentication failed: user 'producer'",
        "unknown user": "error: authentication failed: user 'mallory'",
        "plaintext client": "error: TLS required:",
        "job writes purchases": "error: authorization failed: user 'job' may not write to topic",
        "ui writes purchases": "error: authorization failed: user 'ui' may not write to topic",
        "producer writes dead letters": f"error: authorization failed: user 'producer' may not write to topic '{DLQ}'",
        "job with a wrong password": "error: authentication failed: user 'job'",
    }
    outputs = [produced[1], produced[2]]
    for name, proc in denied.items():
        code, out, err, seconds = finish(proc, 60)
        outputs += [out, err]
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code != 0 and len(errors) == 1 and errors[0].startswith(expected_cause[name]), (name, out, err)
        print(f"{name}: exit {code} after {seconds:.1f}s: {errors[0]}")
        assert "Traceback" not in err
        if "writes" in name:  # the events it could not send are reported, not dropped silently
            assert "10 events failed" in errors[0] or "10 events not sent" in errors[0], (name, out, err)
    code, out, err, _ = finish(job)
    outputs += [out, err]
    assert code == 0, err[-3000:]

    # Allowed reads: the UI user reads everything; exact totals, every dead letter written.
    ui = kafka_security.client_security(broker.tls_dir, "ui")
    events = [json.loads(r.value) for r in read_topic(broker.bootstrap_servers, TOPIC, security=ui) if r.key is None]  # not the malformed
    assert len(events) == EVENTS
    assert read_json_lines_totals(out_dir) == expected_totals(events) == read_results_db(db)
    assert len(read_topic(broker.bootstrap_servers, DLQ, security=ui)) == len([p for p, _ in MALFORMED if p is not None])
    # The dashboard's feed reads as the UI user, over SASL_SSL: the job's results, exact.
    feed = KafkaFeed(broker.bootstrap_servers, FeedTopics(TOPIC, DLQ, RESULTS, METRICS), ui).start()
    try:
        wait_until(lambda: {w["window_start"]: (w["total_purchase"], w["orders"]) for w in feed.snapshot(100)["windows"]}
                   == expected_totals(events), 60, "the dashboard feed to show the job's windows")  # fmt: skip
        assert feed.snapshot(100)["broker_error"] is None
    finally:
        feed.stop()
    # Denied reads: the producer may not read its own topic.
    with pytest.raises(TopicAuthorizationFailedError):
        read_topic(broker.bootstrap_servers, TOPIC, timeout_s=10, security=kafka_security.client_security(broker.tls_dir, "producer"))

    # No password anywhere: process outputs, the broker's logs, the checkpoint, the results.
    passwords = [kafka_security.user_password(broker.tls_dir, u).read_text().strip() for u in kafka_security.ROLES]
    files = [p for root in (tmp_path, broker.data_dir / "logs") for p in Path(root).rglob("*") if p.is_file() and p != wrong]
    assert len(files) > 10
    for password in passwords:
        assert not any(password in text for text in outputs)
        leaked = [str(f) for f in files if password.encode() in f.read_bytes()]
        assert not leaked, leaked


def send_as(security: KafkaSecurity, bootstrap: str, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **security.kafka_python_kwargs())
    for i, value in enumerate(values):
        producer.send(TOPIC, value=value, key=f"m{i}".encode(), partition=i % 3)
    producer.flush()
    producer.close()


def test_kafka_ui_reads_the_secured_broker_as_the_ui_user(secured, browser, tmp_path):  # noqa: F811
    """kaskade gets the same client settings (TLS, SCRAM) through a private config file:
    the admin page lists the topics; the password is on no command line."""
    from purchase_analytics.runtime import kafka_ui
    from purchase_analytics.runtime.web_service import WebService, group_members

    broker = secured
    service = WebService("kafka-ui", free_port(), tmp_path / "web")
    service.start(kafka_ui.MODULE, kafka_ui.start_args(broker.bootstrap_servers, service.port), env=client_env(broker, "ui"))
    try:
        browser.get(f"{service.url}/")
        wait_for_text(browser, [TOPIC, DLQ], 60, "the secured broker's topics on the admin page")
        password = kafka_security.user_password(broker.tls_dir, "ui").read_text().strip()
        pid = int(service.pid_file.read_text())
        command_lines = [Path(f"/proc/{p}/cmdline").read_bytes() for p in group_members(pid) if Path(f"/proc/{p}/cmdline").exists()]
        assert command_lines and not any(password.encode() in line for line in command_lines)
    finally:
        service.stop()
