"""Bad input and bad operations: each case ends in one clear line or a dead letter,
never a stack trace, a lost message or a stopped stream. Real broker, real Spark: the job's
own queries in-process, and the command line where the case is about the command line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from purchase_analytics.admin import create_topics
from purchase_analytics.checkpoint import WINDOWS_DIR, CheckpointLock
from purchase_analytics.failures import JobFailed
from purchase_analytics.job import run_job
from purchase_analytics.kafka_client import admin_client
from purchase_analytics.runtime.processes import wait_until
from purchase_analytics.sinks import read_json_lines_totals

from conftest import (
    AGGREGATOR,
    CHILD_ENV,
    PRODUCER,
    ROOT,
    JobThread,
    expected_totals,
    job_args,
    read_topic,
    run_queries,
    start_streaming_job,
)
from malformed import VALID

NOW = int(time.time())
T0 = NOW - NOW % 600 - 6 * 3600  # a window boundary a few hours ago


def send(bootstrap: str, topic: str, values: list[bytes], partition: int | None = None) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2_000_000)
    for value in values:
        producer.send(topic, value=value, partition=partition)
    producer.flush()
    producer.close()


def event(order_id: str, price: int, ts: float) -> bytes:
    return json.dumps({**VALID, "order_id": order_id, "price": price, "ts": ts}).encode()


def run_cli(argv: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**CHILD_ENV, **(env or {})}
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode != 0, proc
    assert len(lines) == 1, f"expected one line, got:\n{proc.stdout}{proc.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# ------------------------------------------------------------------ settings: one line, no JVM


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--window", "ten minutes"], "'ten minutes' is not a duration"),
        (["--window", "0 seconds"], "'0 seconds' must be more than 0 seconds"),
        (["--trigger", "banana"], "'banana' is not a duration"),
        (["--trigger", "banana", "--available-now"], "'banana' is not a duration"),
        (["--trigger", "1 second", "--available-now"], "--trigger and --available-now exclude each other"),
        (["--topic", "my topic"], "invalid Kafka topic name 'my topic'"),
        (["--dlq-topic", "dead letters"], "invalid Kafka topic name 'dead letters'"),
        (["--max-future-s", "-5"], "must be >= 0"),
    ],
)
def test_bad_aggregator_settings_give_one_line_before_spark_starts(args, expected):
    line = one_line_error(run_cli([str(AGGREGATOR), *args]))
    assert expected in line


def test_bad_setting_from_the_environment_names_the_variable():
    line = one_line_error(run_cli([str(AGGREGATOR)], env={"WINDOW_DURATION": "soon"}))
    assert "WINDOW_DURATION='soon'" in line


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--topic", "my topic"], "invalid Kafka topic name 'my topic'"),
        (["--rate", "-1"], "--rate: must be >= 0, got -1"),
        (["--rate", "fast"], "--rate: must be a number"),
    ],
)
def test_bad_producer_settings_give_one_line(args, expected):
    assert expected in one_line_error(run_cli([str(PRODUCER), *args]))


def test_bad_partition_count_for_make_kafka_gives_one_line(tmp_path):
    proc = run_cli(["-m", "purchase_analytics.runtime.local", "kafka-start"], env={"KAFKA_TOPIC_PARTITIONS": "abc"})
    assert "KAFKA_TOPIC_PARTITIONS='abc'" in one_line_error(proc)


def test_unwritable_checkpoint_gives_the_path_and_the_reason(kafka, new_topic):
    bad = "/etc/hostname/checkpoint"  # under a file: not even root can create it
    line = one_line_error(run_cli([str(AGGREGATOR), "--bootstrap-servers", kafka, "--topic", new_topic(1), "--checkpoint", bad]))
    assert f"cannot use checkpoint directory {bad}: Not a directory" in line


# ------------------------------------------------------------------ the stream goes on


def test_oversized_bad_message_is_dead_lettered_cut_to_fit(spark, kafka, new_topic, tmp_path):
    """A bad message just under the broker's limit: its dead letter (value + key + headers)
    would be over it. It is cut to DLQ_MAX_VALUE_BYTES with headers saying so."""
    topic, dlq = new_topic(1), new_topic(1)
    huge = b'{"order_id": "' + b"x" * 1_048_400 + b'"'  # invalid JSON, 1,048,415 bytes
    send(kafka, topic, [event("a", 100, T0 + 1), huge, event("b", 200, T0 + 2)], partition=0)
    summary = run_queries(spark, job_args(kafka, topic, tmp_path, "--dlq-topic", dlq))
    assert (summary.messages, summary.rejected) == (3, 1)
    assert read_json_lines_totals(tmp_path / "out") == expected_totals([{"price": 100, "ts": T0 + 1}, {"price": 200, "ts": T0 + 2}])
    [letter] = read_topic(kafka, dlq)
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["rejection_reason"] == "value is not valid JSON"
    assert headers["value_truncated"] == "true"
    assert headers["original_size"] == str(len(huge))
    assert (headers["source_topic"], headers["source_partition"], headers["source_offset"]) == (topic, "0", "1")
    assert letter.value == huge[:1_000_000]


def test_missing_topic_is_waited_for(spark, kafka, tmp_path):
    """The job waits for a topic that does not exist yet, then reads it. The command line's
    own steps (`wait_for_topic`, then `run_job`), in-process on the shared session."""
    topic = f"later-{uuid.uuid4().hex[:12]}"
    job = JobThread(spark, job_args(kafka, topic, tmp_path), wait_for_the_topic=True)
    job.start()
    try:
        wait_until(lambda: f"waiting for topic '{topic}'" in job.out.getvalue(), 60, "the job to say it waits for the topic")
        time.sleep(2.5)  # a few more looks at the topic list
        assert job.is_alive(), job.out.getvalue()  # still waiting, not failed
        create_topics(kafka, {topic: 2})
        send(kafka, topic, [event(f"o{i}", 100 + i, T0 + 60 * i) for i in range(20)])
    except BaseException:
        job.signals.stop.set()  # end the wait: what SIGTERM does to the command line
        raise
    summary = job.result()
    out = job.out.getvalue()
    assert f"topic '{topic}' exists now; starting" in out
    assert "restart" not in out and summary.restarts == 0
    assert summary.messages == 20
    assert sum(n for _, n in read_json_lines_totals(tmp_path / "out").values()) == 20


def test_late_drops_are_counted_in_events(spark, kafka, new_topic, tmp_path):
    """50 late events for one closed window, over 2 partitions, in one batch: Spark's own
    metric counts window rows after its aggregation (one); the job counts 50 events."""
    topic = new_topic(2)
    send(kafka, topic, [event("w", 100, T0 + 3000), event("w2", 100, T0 + 3000)], partition=0)
    # two batches: the watermark (T0 + 2700) is in force afterwards
    run_queries(spark, job_args(kafka, topic, tmp_path, "--watermark", "5 minutes", "--max-offsets-per-trigger", "1"))
    late = [event(f"late{i}", 100, T0 + 10 + i) for i in range(50)]  # window [T0, T0+600) ended long before
    send(kafka, topic, late[:25], partition=0)
    send(kafka, topic, late[25:], partition=1)
    progress = tmp_path / "progress.jsonl"
    summary = run_queries(spark, job_args(kafka, topic, tmp_path, "--watermark", "5 minutes", "--progress-file", str(progress)))
    assert (summary.messages, summary.rejected, summary.dropped_late) == (50, 0, 50)
    assert read_json_lines_totals(tmp_path / "out") == expected_totals([{"price": 100, "ts": T0 + 3000}] * 2)
    records = [json.loads(line) for line in progress.read_text().splitlines()]
    assert sum(r["late_rows"] for r in records) == 1  # Spark's numRowsDroppedByWatermark: one window row


# ------------------------------------------------------------------ failures a restart cannot heal


def fails_at_once(spark, config) -> str:
    """The job's own loop on the shared session: it must end with JobFailed, no restart."""
    out = io.StringIO()
    with pytest.raises(JobFailed) as failed:
        run_job(config, out=out, spark=spark)
    assert "restarting" not in out.getvalue()
    return str(failed.value)


def test_damaged_checkpoint_fails_at_once_with_the_fix(spark, kafka, new_topic, tmp_path):
    topic, ckpt = new_topic(1), tmp_path / "ckpt"
    send(kafka, topic, [event("a", 100, T0)])
    run_queries(spark, job_args(kafka, topic, tmp_path))
    offsets = sorted((ckpt / WINDOWS_DIR / "offsets").glob("[0-9]*"))[-1]
    offsets.write_text(offsets.read_text()[:20])  # truncated mid-record
    send(kafka, topic, [event("b", 100, T0)])
    message = fails_at_once(spark, job_args(kafka, topic, tmp_path))
    assert message.startswith(f"checkpoint {ckpt} is damaged") and "--checkpoint" in message


def test_checkpoint_from_a_wiped_broker_fails_at_once_with_the_fix(spark, kafka, new_topic, tmp_path):
    topic, ckpt = new_topic(1), tmp_path / "ckpt"
    send(kafka, topic, [event(f"o{i}", 100, T0) for i in range(30)])
    run_queries(spark, job_args(kafka, topic, tmp_path))
    admin = admin_client(kafka)
    admin.delete_topics([topic])
    admin.close()
    wait_until(lambda: _recreate(kafka, topic), 60, "the topic to be recreated")
    send(kafka, topic, [event("new", 100, T0)])
    message = fails_at_once(spark, job_args(kafka, topic, tmp_path))
    assert message.startswith(f"checkpoint {ckpt} points at offsets that topic '{topic}' no longer has")
    assert "--checkpoint NEW_DIR" in message


def test_recreated_topic_with_the_same_offsets_is_refused_before_spark(spark, kafka, new_topic, tmp_path):
    """Offsets alone cannot tell a recreated topic that happens to hold as many records:
    Spark would silently skip the new ones. The checkpoint records the topic's id."""
    from purchase_analytics.checkpoint import LocalFiles
    from purchase_analytics.queries import verify_job_checkpoint

    topic, ckpt = new_topic(1), tmp_path / "ckpt"
    send(kafka, topic, [event("a", 100, T0)])
    config = job_args(kafka, topic, tmp_path)
    verify_job_checkpoint(LocalFiles(ckpt), config)  # as the command line does before it starts
    run_queries(spark, config)
    admin = admin_client(kafka)
    admin.delete_topics([topic])
    admin.close()
    wait_until(lambda: _recreate(kafka, topic), 60, "the topic to be recreated")
    send(kafka, topic, [event("b", 200, T0)])  # offset 0 again: the checkpoint's offset 1 fits
    line = one_line_error(run_cli([str(AGGREGATOR), "--bootstrap-servers", kafka, "--topic", topic, "--checkpoint", str(ckpt)]))
    assert f"checkpoint {ckpt} belongs to another incarnation of topic '{topic}'" in line and "--checkpoint NEW_DIR" in line


def _recreate(kafka: str, topic: str) -> bool:
    try:
        return bool(create_topics(kafka, {topic: 1}))
    except Exception:  # the deletion is still in progress
        return False


@pytest.mark.slow
def test_second_job_on_a_checkpoint_is_refused(kafka, tmp_path):
    """The first job holds the checkpoint's lock from its start: here while it waits for its
    topic (so no JVM is needed for it to be a running job)."""
    topic, ckpt = f"later-{uuid.uuid4().hex[:12]}", tmp_path / "ckpt"
    first = start_streaming_job("--bootstrap-servers", kafka, "--topic", topic, "--checkpoint", str(ckpt))
    try:
        wait_until(lambda: (ckpt / ".lock").exists() and (ckpt / ".lock").read_text().strip() == str(first.pid), 60, "the first job's lock")
        proc = run_cli([str(AGGREGATOR), "--bootstrap-servers", kafka, "--topic", topic, "--checkpoint", str(ckpt)])
        assert f"checkpoint {ckpt} is in use by another job (PID {first.pid})" in one_line_error(proc)
    finally:
        first.terminate()
        _, err = first.communicate(timeout=60)
    assert "stopped by a signal while waiting for the topic" in err and "Traceback" not in err, err  # SIGTERM: a clean stop
    # the lock dies with its owner: a new job may take the checkpoint
    with CheckpointLock(str(ckpt)):
        assert (ckpt / ".lock").read_text().strip() == str(os.getpid())
