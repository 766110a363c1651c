"""Window totals computed in plain Python, independent of Spark: the yardstick the tests,
`make test-docker` and the benchmark compare the Spark job against."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from .defaults import DEFAULTS
from .events import window_start_s
from .kafka_client import KafkaSecurity
from .options import interval_seconds

DEFAULT_WINDOW_S = int(interval_seconds(DEFAULTS["WINDOW_DURATION"]))


def read_topic(bootstrap_servers: str, topic: str, timeout_s: float = 60, security: KafkaSecurity | None = None) -> list:
    """Every record of `topic`, from the beginning to the end offsets seen at the start."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaConnectionError

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","), enable_auto_commit=False, **(security or KafkaSecurity()).kafka_python_kwargs()
    )
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                found = consumer.partitions_for_topic(topic)
                break
            except KafkaConnectionError:
                # kafka-python 3.0.12 asks one node for the metadata and raises when it is down
                # (a cluster's node just killed is still listed); the next try asks another
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        partitions = [TopicPartition(topic, p) for p in sorted(found or [])]
        if not partitions:
            raise RuntimeError(f"topic {topic} not found at {bootstrap_servers}")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out reading {topic} after {timeout_s:.0f}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def window_totals(
    events: Iterable[dict], window_s: int = DEFAULT_WINDOW_S, group_by: Sequence[str] = (), slide_s: int | None = None
) -> dict[str | tuple, tuple[int, int]]:
    """(total_purchase, orders) per window, keyed as the aggregator's outputs are
    (records.record_key): the window start (ISO-8601 UTC), then the values of the `group_by`
    fields when there are any. An event is in every window [start, start + window_s) whose
    start is a multiple of `slide_s` (tumbling windows when None)."""
    slide_s = slide_s or window_s
    totals: dict[str | tuple, list[int]] = {}
    for event in events:
        start = window_start_s(event["ts"], slide_s)  # the latest window holding the event, then the earlier ones
        while start > event["ts"] - window_s:
            iso = datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            acc = totals.setdefault((iso, *(event[g] for g in group_by)) if group_by else iso, [0, 0])
            acc[0] += event["price"]
            acc[1] += 1
            start -= slide_s
    return {key: (total, orders) for key, (total, orders) in totals.items()}
