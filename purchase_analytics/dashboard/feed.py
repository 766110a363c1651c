"""Reads the dashboard's inputs from Kafka on a background thread into a PipelineState.

confluent-kafka (librdkafka) rather than kafka-python here: every call takes a timeout, so
a broker that goes away turns into "broker down" on the page within seconds instead of a
blocked thread, and the consumer reconnects by itself when the broker comes back.
Partitions are assigned (no group join, no committed offsets) and read from the beginning.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from ..kafka_client import KafkaSecurity
from .state import PipelineState

METADATA_INTERVAL_S = 1.0
REQUEST_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class FeedTopics:
    purchases: str  # end offsets only, for the consumer lag
    dead_letters: str | None
    results: str
    metrics: str


class KafkaFeed:
    def __init__(self, bootstrap_servers: str, topics: FeedTopics, security: KafkaSecurity | None = None):
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self.security = security or KafkaSecurity()
        self.state = PipelineState()
        self.lock = threading.Lock()
        self.broker_error: str | None = "not connected yet"
        self.broker_down_since: float | None = time.time()
        self.last_contact: float | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-feed", daemon=True)

    def start(self) -> KafkaFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def snapshot(self, last_windows: int) -> dict:
        with self.lock:
            view = self.state.view(last_windows)
        view.update(
            broker_error=self.broker_error,
            broker_down_since=self.broker_down_since,
            last_contact=self.last_contact,
            bootstrap_servers=self.bootstrap_servers,
        )
        return view

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": f"purchase-dashboard-{uuid.uuid4().hex[:8]}",  # never joined nor committed: partitions are assigned
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "log_level": 0,  # a down broker is shown on the page, not logged every second
                "reconnect.backoff.max.ms": 1000,
                **self.security.confluent_config(),  # TLS and SASL settings: the same object as every client
            }
        )
        next_metadata = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_metadata:
                    self._refresh(consumer)
                    next_metadata = time.monotonic() + METADATA_INTERVAL_S
                message = consumer.poll(0.2)
                if message is not None and not message.error():
                    self._apply(message)
        finally:
            consumer.close()

    def _refresh(self, consumer: Consumer) -> None:
        """Assign new partitions of the topics read, and ask the purchase topic's end offsets."""
        try:
            metadata = consumer.list_topics(timeout=REQUEST_TIMEOUT_S)
            new = [
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for topic in (self.topics.results, self.topics.metrics, self.topics.dead_letters)
                if topic in metadata.topics
                for p in metadata.topics[topic].partitions
                if (topic, p) not in self._assigned
            ]
            if new:
                consumer.incremental_assign(new)
                self._assigned.update((tp.topic, tp.partition) for tp in new)
            end_offsets = {}
            purchases = metadata.topics.get(self.topics.purchases)
            for p in purchases.partitions if purchases else {}:
                end_offsets[p] = consumer.get_watermark_offsets(
                    TopicPartition(self.topics.purchases, p), timeout=REQUEST_TIMEOUT_S, cached=False
                )[1]
        except KafkaException as exc:
            if self.broker_error is None:
                self.broker_down_since = time.time()
            self.broker_error = f"Kafka at {self.bootstrap_servers} is not answering ({exc.args[0].str() if exc.args else exc})"
            return
        with self.lock:
            self.state.end_offsets = end_offsets
        self.broker_error, self.broker_down_since, self.last_contact = None, None, time.time()

    def _apply(self, message) -> None:
        topic = message.topic()
        with self.lock:
            if topic == self.topics.results:
                self.state.apply_result(message.key(), message.value(), message.timestamp()[1])
            elif topic == self.topics.metrics:
                self.state.apply_metrics(message.value(), message.timestamp()[1])
            elif topic == self.topics.dead_letters:
                self.state.apply_dead_letter(message.headers() or [], message.key())
