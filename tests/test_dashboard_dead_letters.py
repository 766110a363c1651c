"""The dashboard counts distinct dead letters: a batch the job runs again after a crash writes
its dead letters a second time (the dead-letter topic is written at least once), and the
dashboard's feed, reading the real topic, counts each rejected message once, by its source
topic, partition and offset."""

from __future__ import annotations

import uuid
from collections import Counter

from kafka import KafkaProducer

from purchase_analytics.admin import create_topics
from purchase_analytics.dashboard.feed import FeedTopics, KafkaFeed
from purchase_analytics.reference import read_topic
from purchase_analytics.runtime.processes import wait_until

PARTITIONS = 2
END = "end of the test's input"  # one more dead letter last in each partition: the feed has read all before it


def dead_letter(source: str, partition: int, offset: int, reason: str) -> dict:
    """A dead letter as the job writes it (transform.DeadLetterRecords): the source's
    coordinates as the key and as headers, with the reason."""
    return {
        "key": f"{source}-{partition}-{offset}".encode(),
        "value": b"{not json",
        "headers": [
            ("rejection_reason", reason.encode()),
            ("source_topic", source.encode()),
            ("source_partition", str(partition).encode()),
            ("source_offset", str(offset).encode()),
        ],
    }


def test_a_replayed_batch_of_dead_letters_counts_once(kafka):
    suffix = uuid.uuid4().hex[:8]
    dlq, source = f"dlq-{suffix}", f"purchases-{suffix}"
    create_topics(kafka, {dlq: PARTITIONS})
    reasons = ["value is not valid JSON"] * 3 + ["missing field price"] * 2 + ["price is negative"] * 2
    batch = [dead_letter(source, offset % 3, offset, reason) for offset, reason in enumerate(reasons)]
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    try:
        for record in batch + batch:  # the batch, then the same batch run again
            producer.send(dlq, **record)  # partitioned by key, as Spark's Kafka sink does: a copy lands beside its original
        for p in range(PARTITIONS):
            producer.send(dlq, partition=p, **dead_letter(f"end-{suffix}", p, 0, END))
        producer.flush()
    finally:
        producer.close()
    assert len(read_topic(kafka, dlq)) == 2 * len(batch) + PARTITIONS  # every copy is in the topic

    feed = KafkaFeed(kafka, FeedTopics(f"purchases-{suffix}", dlq, f"results-{suffix}", f"metrics-{suffix}")).start()
    try:
        wait_until(lambda: feed.snapshot(1)["dead_letters"].get(END) == PARTITIONS, 60, "the feed to read the whole dead-letter topic")
        counted = feed.snapshot(1)["dead_letters"]
    finally:
        feed.stop()
    del counted[END]
    assert counted == dict(Counter(reasons))  # by reason, each source message once
    distinct = {(h[1][1], h[2][1], h[3][1]) for h in (r["headers"] for r in batch)}  # source topic, partition, offset
    assert sum(counted.values()) == len(distinct) == len(batch)
