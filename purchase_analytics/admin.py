"""Kafka's admin API as the project uses it: the job's pre-flight checks, and creating topics
(the job's output topics, and the local brokers', the benchmark's and the tests' topics).

Spark's own Kafka client retries for minutes when no broker answers, or the broker refuses
the login, and fails a query at every try while the topic is missing; these checks say so
at once, in one line (BrokerUnreachable), or wait for the topic. Every admin client comes
from kafka_client.admin_client.
"""

from __future__ import annotations

import sys
import time

from .config import AggregatorConfig
from .failures import JobFailed
from .kafka_client import ClientErrorLog, KafkaSecurity, admin_client, diagnose_connection, explain_failure
from .signals import JobSignals


class BrokerUnreachable(RuntimeError):
    """No broker answers, it refuses this client, or the topic never came: the message is the line."""


def _admin(bootstrap_servers: str, timeout_s: float, security: KafkaSecurity, topic: str | None = None):
    """An admin client, or one line naming why there is none: no broker, or the broker
    refused this client (login, TLS)."""
    from kafka.errors import KafkaError

    with ClientErrorLog() as log:
        try:
            return admin_client(bootstrap_servers, security, timeout_s)
        except KafkaError as exc:
            cause = explain_failure(exc, security, bootstrap_servers, topic, "read", log) or diagnose_connection(
                security, bootstrap_servers
            )
            raise BrokerUnreachable(
                cause or f"cannot reach a Kafka broker at {bootstrap_servers} ({exc}); is it running? try `make kafka`"
            ) from None


def check_broker(bootstrap_servers: str, topic: str, security: KafkaSecurity, timeout_s: float = 10.0) -> None:
    """Fail fast with one line when no broker answers, or it refuses this client (login,
    TLS, ACL): Spark's own client would retry for minutes. A missing topic is not an error
    here: `wait_for_topic` waits for it."""
    from kafka.errors import KafkaError

    admin = _admin(bootstrap_servers, timeout_s, security, topic)
    try:
        topics = admin.describe_topics([topic])
    except KafkaError as exc:
        topics = [{"error_code": getattr(exc, "errno", -1), "error": exc}]
    finally:
        admin.close()
    if topics and topics[0].get("error_code", 0) == 29:  # TOPIC_AUTHORIZATION_FAILED
        raise BrokerUnreachable(explain_failure("TopicAuthorizationFailedError", security, bootstrap_servers, topic, "read"))


def wait_for_topic(
    bootstrap_servers: str,
    topic: str,
    security: KafkaSecurity,
    signals: JobSignals | None = None,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    out=sys.stderr,
) -> None:
    """Return once `topic` exists. A missing topic is waited for, with one line saying so:
    Spark's own source would fail the query at every try."""
    admin = _admin(bootstrap_servers, 15.0, security, topic)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        warned = False
        while topic not in admin.list_topics():
            if not warned:
                print(
                    f"waiting for topic '{topic}' to exist at {bootstrap_servers} (create it, e.g. with `make kafka`)", file=out, flush=True
                )
                warned = True
            if deadline and time.monotonic() > deadline:
                raise BrokerUnreachable(f"topic '{topic}' did not appear at {bootstrap_servers} within {timeout_s:g}s")
            if signals and signals.stop.wait(poll_s):
                raise JobFailed("stopped by a signal while waiting for the topic")
            if not signals:
                time.sleep(poll_s)
        if warned:
            print(f"topic '{topic}' exists now; starting", file=out, flush=True)
    finally:
        admin.close()


def source_identity(config: AggregatorConfig) -> dict[str, str]:
    """The cluster id and the topic id of the job's source topic (empty when unknown)."""
    admin = _admin(config.bootstrap_servers, 15.0, config.security, config.topic)
    try:
        cluster_id = admin.describe_cluster().get("cluster_id") or ""
        described = admin.describe_topics([config.topic])
        topic_id = str(described[0].get("topic_id") or "") if described else ""
    finally:
        admin.close()
    if topic_id.strip("0-"):  # an all-zero uuid is "no id"
        return {"topic": config.topic, "cluster_id": cluster_id, "topic_id": topic_id}
    return {"topic": config.topic, "cluster_id": cluster_id, "topic_id": ""}


def ensure_output_topics(config: AggregatorConfig) -> None:
    """The job's own output topics exist before its first write: the results topic
    compacted (the latest total per window is what it keeps), and replicated like the
    cluster allows (up to 3), so losing a broker does not stall the job's writes."""
    topics = {name: 1 for name in (config.dlq_topic, config.results_topic, config.metrics_topic) if name}
    if not topics:
        return
    admin = _admin(config.bootstrap_servers, 15.0, config.security)
    try:
        replication = min(3, len(admin.describe_cluster()["brokers"]))
    finally:
        admin.close()
    configs = {config.results_topic: {"cleanup.policy": "compact"}} if config.results_topic else {}
    create_topics(config.bootstrap_servers, topics, replication, config.security, configs)


def create_topics(
    bootstrap_servers: str,
    topics: dict[str, int],
    replication_factor: int = 1,
    security: KafkaSecurity | None = None,
    configs: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (name -> partitions, name -> topic configs).
    Returns the created names. Replicated topics get min.insync.replicas=2, so acks=all
    means two copies."""
    from kafka.admin import NewTopic
    from kafka.errors import InvalidReplicationFactorError, NodeNotReadyError, TopicAlreadyExistsError, UnknownBrokerIdError, for_code

    # a cluster just (re)started: a node still fenced, or the controller not yet in the client's metadata
    retriable = (InvalidReplicationFactorError, UnknownBrokerIdError, NodeNotReadyError)
    admin = admin_client(bootstrap_servers, security)
    replicated = {"min.insync.replicas": "2"} if replication_factor >= 3 else {}
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, partitions, replication_factor, topic_configs={**replicated, **(configs or {}).get(name, {})})
            for name, partitions in topics.items()
            if name not in existing
        ]
        created: list[str] = []
        deadline = time.monotonic() + 30
        while missing:
            try:
                results = admin.create_topics(missing, raise_errors=False)["topics"]
            except NodeNotReadyError:
                results = [{"name": t.name, "error_code": NodeNotReadyError.errno} for t in missing]
            errors = {r["name"]: for_code(r["error_code"]) for r in results if r["error_code"]}
            created += [t.name for t in missing if t.name not in errors]
            # One the metadata did not list yet but the broker has: there already, not created here.
            errors = {name: error for name, error in errors.items() if error is not TopicAlreadyExistsError}
            for name, error in errors.items():
                if not issubclass(error, retriable) or time.monotonic() > deadline:
                    raise error(f"creating topic {name}")
            missing = [t for t in missing if t.name in errors]
            if missing:
                time.sleep(1)
        return created
    finally:
        admin.close()
