"""Readers of the job's outputs that only the tests use: the latest total per window of the
results topic and of the results database, and the replicas and leaders of a local cluster."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from purchase_analytics.kafka_client import KafkaSecurity, admin_client
from purchase_analytics.records import record_key
from purchase_analytics.reference import read_topic
from purchase_analytics.runtime.kafka_broker import KafkaCluster


def read_results_topic(
    bootstrap_servers: str, topic: str, security: KafkaSecurity | None = None, query_id: str | None = None
) -> dict[str | tuple, tuple[int, int]]:
    """record_key -> (total_purchase, orders): the latest value per key of the results
    topic, of the run `query_id`, or of the run whose record came last."""
    latest: dict[str, dict] = {}
    last_run = None
    for record in sorted(read_topic(bootstrap_servers, topic, security=security), key=lambda r: r.timestamp):
        if record.value is None:  # a tombstone deletes its key
            latest.pop(record.key.decode(), None)
            continue
        value = latest[record.key.decode()] = json.loads(record.value)
        last_run = value.get("query_id", "")
    run = last_run if query_id is None else query_id
    return {record_key(v): (v["total_purchase"], v["orders"]) for v in latest.values() if v.get("query_id", "") == run}


def latest_results_db_run(db: sqlite3.Connection) -> str | None:
    """The query id of the run that committed the last batch, None before any."""
    found = db.execute("SELECT query_id FROM committed_batches ORDER BY rowid DESC LIMIT 1").fetchone()
    return found[0] if found else None


def read_results_db(path: str | Path, query_id: str | None = None) -> dict[str | tuple, tuple[int, int]]:
    """record_key -> (total_purchase, orders) of every window of the run `query_id` in the
    results database, or of the run that committed the last batch."""
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        run = latest_results_db_run(db) if query_id is None else query_id
        rows = db.execute("SELECT * FROM window_totals WHERE query_id = ?", (run,))
        return {record_key(dict(row)): (row["total_purchase"], row["orders"]) for row in rows}
    finally:
        db.close()


def _partitions(cluster: KafkaCluster, topic: str) -> list[dict]:
    """`topic`'s partitions as the cluster's metadata describes them."""
    admin = admin_client(cluster.admin_bootstrap, cluster.admin_security())
    try:
        return admin.describe_topics([topic])[0]["partitions"]
    finally:
        admin.close()


def in_sync(cluster: KafkaCluster, topic: str) -> bool:
    """Every partition of `topic` has all its replicas in sync. False while the cluster
    cannot tell: a node that has just restarted is listed before it accepts connections,
    and an admin client that picks it fails."""
    from kafka.errors import KafkaConnectionError

    try:
        partitions = _partitions(cluster, topic)
    except KafkaConnectionError:
        return False
    return all(len(p["isr_nodes"]) == len(p["replica_nodes"]) for p in partitions)


def leader_of(cluster: KafkaCluster, topic: str, partition: int = 0) -> int:
    """The node id leading `topic`'s partition, from the cluster's metadata."""
    return next(p["leader_id"] for p in _partitions(cluster, topic) if p["partition_index"] == partition)
