"""Three KRaft brokers (each also a controller), topics with replication factor 3 and
min.insync.replicas=2: one broker SIGKILLed mid-stream while the producer (acks=all,
idempotence) and the Spark job run. Nothing fails, every acknowledged event is in the topic
exactly once, the window totals are exact, and nobody restarts the job. The producer is the
command line; the job is the job's own loop (`run_job`), in-process on the shared session."""

from __future__ import annotations

import uuid

import pytest
from test_faults import committed_batches

from purchase_analytics.producer import EventGenerator
from purchase_analytics.runtime.kafka_broker import KafkaCluster, create_topics
from purchase_analytics.runtime.processes import free_port, wait_until
from purchase_analytics.sinks import read_results_db

from conftest import (
    KAFKA_JARS,
    TEST_JVM_OPTIONS,
    JobThread,
    expected_totals,
    job_config,
    produced_events,
    run_producer,
    start_producer,
    wait_for_acknowledgements,
)

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.kafka, pytest.mark.spark]

PARTITIONS, EVENTS, RATE = 2, 2000, 400


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ports = [(free_port(), free_port(), None) for _ in range(3)]
    cluster = KafkaCluster.create(KAFKA_JARS, tmp_path_factory.mktemp("kafka-cluster"), ports, heap="384m", jvm_options=TEST_JVM_OPTIONS)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def leaders(cluster: KafkaCluster, topic: str) -> set[int]:
    return {cluster.leader_of(topic, p) for p in range(PARTITIONS)}


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
                seen = wait_for_acknowledgements(producer)  # it is sending: for about 5 s at 400 events/s
                before = leaders(cluster, topic)
                node = cluster.leader_of(topic, 0) if victim == "leader" else next(n for n in (1, 2, 3) if n not in before)
                cluster.broker(node).kill()  # SIGKILL mid-stream, no controlled shutdown
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
            wait_until(lambda: cluster.in_sync(topic), 60, "the restarted broker to catch up")
    finally:
        job.signals.stop.set()  # what SIGTERM does to the command line
        job.join(120)
    summary = job.result(0)
    assert "restarting from the checkpoint" not in job.out.getvalue(), job.out.getvalue()[-2000:]
    assert summary.restarts == 0


def order_ids(seed: int, count: int) -> list[str]:
    generator = EventGenerator(seed=seed)
    return [generator.next_event().order_id for _ in range(count)]


def describe(cluster: KafkaCluster, topic: str) -> dict:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers.split(","))

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
