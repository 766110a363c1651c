"""One cluster of three KRaft brokers (each also a controller) for the file: topics with
replication factor 3 and min.insync.replicas=2. Each test leaves the three nodes running.

- One broker SIGKILLed mid-stream while the producer (acks=all, idempotence) and the Spark
  job run: nothing fails, every acknowledged event is in the topic exactly once, the window
  totals are exact, and nobody restarts the job.
- A results topic that needs all three replicas in sync (min.insync.replicas=3) with one
  follower stopped: the job's writes fail with NotEnoughReplicas, which a restart from the
  checkpoint heals, and every window's final total is there once the follower is back.

The producer is the command line; the job is the job's own loop (`run_job`), in-process on
the shared session. The controller quorum keeps its majority throughout."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from readers import in_sync, leader_of, read_results_db, read_results_topic
from test_failures import Captured, py4j_wrapped
from test_faults import committed_batches
from test_output_failures import CONFIG, windows

from purchase_analytics.admin import create_topics
from purchase_analytics.failures import OutputRetriable, classify_failure
from purchase_analytics.kafka_client import KafkaSecurity, admin_client
from purchase_analytics.producer import EventGenerator
from purchase_analytics.runtime.kafka_broker import KafkaBroker, KafkaCluster
from purchase_analytics.runtime.processes import free_port, wait_until
from purchase_analytics.sinks import KafkaPublisher, KafkaResultsSink

from conftest import (
    KAFKA_JARS,
    TEST_JVM_OPTIONS,
    JobThread,
    expected_totals,
    job_config,
    produced_events,
    run_producer,
    send_raw,
    start_producer,
    wait_for_acknowledgements,
)
from malformed import VALID

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.kafka, pytest.mark.spark]

PARTITIONS, EVENTS, RATE = 2, 700, 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ports = [(free_port(), free_port(), None) for _ in range(3)]
    cluster = KafkaCluster.create(KAFKA_JARS, tmp_path_factory.mktemp("kafka-cluster"), ports, heap="384m", jvm_options=TEST_JVM_OPTIONS)
    cluster.start()
    try:
        yield cluster
    finally:
        for broker in cluster.brokers:  # its data is thrown away: no controlled shutdown to wait for
            broker.kill()


def leaders(cluster: KafkaCluster, topic: str) -> set[int]:
    return {leader_of(cluster, topic, p) for p in range(PARTITIONS)}


def test_brokers_killed_mid_stream_lose_and_double_nothing(spark, cluster, tmp_path):
    """One job throughout. Phase 1 SIGKILLs a follower (a node leading no partition of the
    topic); it rejoins; phase 2 SIGKILLs partition 0's leader. Each while events flow."""
    topic = f"purchases-{uuid.uuid4().hex[:8]}"
    create_topics(cluster.bootstrap_servers, {topic: PARTITIONS}, cluster.replication_factor)
    assert describe(cluster, topic) == {"replicas": 3, "min.insync.replicas": "2"}
    common = ["--bootstrap-servers", cluster.bootstrap_servers, "--topic", topic]
    run_producer(*common, "--rate", "0", "--count", "100", "--seed", "7", timeout=60)
    ids = order_ids(7, 100)
    db = tmp_path / "results.db"
    config = job_config(
        *common,
        *("--checkpoint", str(tmp_path / "ckpt"), "--results-db", str(db), "--trigger", "1 second", "--no-console", "--dlq-topic", ""),
        available_now=False,
    )
    job = JobThread(spark, config)
    job.start()
    try:
        wait_until(lambda: committed_batches(db) >= 1, 240, "the job's first batch")
        for seed, victim in ((8, "follower"), (9, "leader")):
            producer = start_producer(
                *common,
                "--rate",
                str(RATE),
                "--count",
                str(EVENTS),
                "--seed",
                str(seed),
                "--progress-interval-s",
                "1",
            )
            try:
                seen = wait_for_acknowledgements(producer)  # it is sending, for about a second more
                before = leaders(cluster, topic)
                node = leader_of(cluster, topic, 0) if victim == "leader" else next(n for n in (1, 2, 3) if n not in before)
                cluster.broker(node).kill()  # SIGKILL mid-stream, no controlled shutdown
                assert producer.poll() is None, seen  # the kill came before the producer's last event
                out = seen + producer.communicate(timeout=240)[0]
            finally:
                if producer.poll() is None:
                    producer.kill()
            assert f"done: sent {EVENTS}, acknowledged {EVENTS}, failed 0, pending 0" in out, out
            assert producer.returncode == 0
            if victim == "leader":
                assert node not in leaders(cluster, topic)  # a new leader took over
            ids += order_ids(seed, EVENTS)
            stored = produced_events(cluster.bootstrap_servers, topic)
            assert sorted(e["order_id"] for e in stored) == sorted(ids)  # every acknowledged event, exactly once
            expected = expected_totals(stored)
            wait_until(lambda expected=expected: read_results_db(db) == expected, 180, "exact window totals while a broker is down")
            assert job.is_alive()  # the same job, never restarted by hand
            print(
                f"{victim} (node {node}) SIGKILLed: producer acknowledged {EVENTS} of {EVENTS}, failed 0; "
                f"topic holds {len(stored)} events, {len(set(e['order_id'] for e in stored))} distinct; "
                f"job counted {sum(n for _, n in read_results_db(db).values())} in {len(expected)} window(s)"
            )
            cluster.start()  # the killed node rejoins from its data directory
            wait_until(lambda: in_sync(cluster, topic), 60, "the restarted broker to catch up")
    finally:
        job.signals.stop.set()  # what SIGTERM does to the command line
        job.join(120)
    summary = job.result(0)
    assert "restarting from the checkpoint" not in job.out.getvalue(), job.out.getvalue()[-2000:]
    assert summary.restarts == 0


def stop_a_follower(cluster: KafkaCluster, topic: str) -> KafkaBroker:
    """Stop (controlled shutdown) a node that follows `topic`'s partition 0: its leader is then
    short of one in-sync replica, while two of the three controllers keep the quorum."""
    leader = leader_of(cluster, topic)
    follower = cluster.broker(next(n for n in (1, 2, 3) if n != leader))
    follower.stop()
    return follower


def all_in_sync_topic(cluster: KafkaCluster, topic: str, partitions: int = 1) -> None:
    create_topics(
        cluster.bootstrap_servers,
        {topic: partitions},
        cluster.replication_factor,
        configs={topic: {"cleanup.policy": "compact", "min.insync.replicas": "3"}},
    )
    wait_until(lambda: in_sync(cluster, topic), 60, f"topic {topic}'s replicas in sync")


def test_too_few_in_sync_replicas_is_retriable_and_the_job_recovers_with_exact_totals(spark, cluster, tmp_path):
    """A follower of the results topic (min.insync.replicas=3) stops: its leader refuses
    acks=all writes with NotEnoughReplicas, which the publisher raises as the kind the job
    restarts on (the same through py4j). The job, started during the outage, restarts its
    queries from the checkpoint until the follower is back; every window's final total is
    then in the topic."""
    topic, results = f"purchases-{uuid.uuid4().hex[:8]}", f"results-{uuid.uuid4().hex[:8]}"
    create_topics(cluster.bootstrap_servers, {topic: 3}, cluster.replication_factor)
    all_in_sync_topic(cluster, results)
    t0 = int(datetime.now(timezone.utc).timestamp()) // 600 * 600 - 7200
    events = [{**VALID, "order_id": f"r{i}", "price": 100 + i, "ts": t0 + 11 * i} for i in range(400)]
    send_raw(cluster.bootstrap_servers, topic, [(json.dumps(e).encode(), i % 3) for i, e in enumerate(events)])
    follower = stop_a_follower(cluster, results)
    try:
        publisher = KafkaPublisher(cluster.bootstrap_servers, KafkaSecurity())
        try:
            with pytest.raises(OutputRetriable) as retriable:
                KafkaResultsSink(publisher, results).write(0, windows(3))
        finally:
            publisher.close()
        assert "NotEnoughReplicas" in str(retriable.value), retriable.value
        assert classify_failure(retriable.value, CONFIG) is None  # the job restarts from its checkpoint
        assert classify_failure(Captured(py4j_wrapped(retriable.value)), CONFIG) is None

        config = job_config(
            "--bootstrap-servers", cluster.bootstrap_servers, "--topic", topic, "--checkpoint", str(tmp_path / "ckpt"),
            "--results-topic", results, "--dlq-topic", "", "--metrics-topic", "", "--no-console", "--max-offsets-per-trigger", "150",
        )  # fmt: skip
        job = JobThread(spark, config)
        job.start()
        wait_until(lambda: "restarting from the checkpoint" in job.out.getvalue(), 120, "the job to restart after NotEnoughReplicas")
    finally:
        follower.start()
    summary = job.result(180)
    out = job.out.getvalue()
    assert summary.restarts >= 1 and f"not written to results topic '{results}'" in out and "NotEnoughReplicas" in out, out
    assert read_results_topic(cluster.bootstrap_servers, results) == expected_totals(events)
    wait_until(lambda: in_sync(cluster, results), 60, "the restarted broker to catch up")  # the cluster whole for the next test


def order_ids(seed: int, count: int) -> list[str]:
    generator = EventGenerator(seed=seed)
    return [generator.next_event().order_id for _ in range(count)]


def describe(cluster: KafkaCluster, topic: str) -> dict:
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    admin = admin_client(cluster.bootstrap_servers)

    def partitions():
        try:
            return admin.describe_topics([topic])[0]["partitions"]
        except KafkaError:  # a node refused the connection (seen once from a fresh clone, under load): ask again
            return None

    try:
        # A new topic reaches every broker's metadata a moment after its creation returns.
        wait_until(partitions, 30, f"topic {topic}'s partitions in the metadata")
        (info,) = admin.describe_topics([topic])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, ["min.insync.replicas"])])
    finally:
        admin.close()
    text = str(configs)
    return {"replicas": len(info["partitions"][0]["replica_nodes"]), "min.insync.replicas": "2" if "'2'" in text or '"2"' in text else text}
