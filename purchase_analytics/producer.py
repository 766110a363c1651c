"""Purchase event generation and the Kafka send loop.

Generation draws from pools precomputed once (Faker's safe colors, the furniture list)
with one seeded `random.Random`, so a seed gives the same event sequence and the hot
loop never calls Faker per field.
"""
from __future__ import annotations

import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator

from faker.providers.color import Provider as ColorProvider

from .config import ProducerConfig
from .events import CUSTOMER_ID_MAX, FURNITURE, PRICE_MIN, PurchaseEvent

COLORS = tuple(ColorProvider.safe_colors)


class EventGenerator:
    """Makes purchase events; `late_fraction` of them get an event time up to
    `max_lateness_s` in the past, to exercise the watermark."""

    def __init__(
        self,
        seed: int | None = None,
        price_max: int = 150_000,
        late_fraction: float = 0.0,
        max_lateness_s: int = 0,
        clock: Callable[[], float] = time.time,
    ):
        self._rng = random.Random(seed)
        self._price_max = price_max
        self._late_fraction = late_fraction
        self._max_lateness_s = max_lateness_s
        self._clock = clock

    def next_event(self) -> PurchaseEvent:
        rng = self._rng
        ts = int(self._clock())
        if self._late_fraction and rng.random() < self._late_fraction:
            ts -= rng.randint(1, max(1, self._max_lateness_s))
        return PurchaseEvent(
            order_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            customer_id=rng.randint(1, CUSTOMER_ID_MAX),
            furniture=rng.choice(FURNITURE),
            color=rng.choice(COLORS),
            price=rng.randint(PRICE_MIN, self._price_max),
            ts=ts,
        )

    def events(self, count: int = 0) -> Iterator[PurchaseEvent]:
        """`count` events, or an endless stream when count is 0."""
        produced = 0
        while count == 0 or produced < count:
            yield self.next_event()
            produced += 1


@dataclass
class DeliveryStats:
    """Counts updated from the client's I/O thread through delivery callbacks."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_success(self, _metadata) -> None:
        with self._lock:
            self.acked += 1

    def on_error(self, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1
            self.last_error = f"{type(exc).__name__}: {exc}"


class BrokerUnavailable(RuntimeError):
    pass


def create_kafka_producer(config: ProducerConfig):
    """A kafka-python producer tuned for throughput without giving up durability:
    acks=all + idempotence, large batches and a short linger."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        return KafkaProducer(
            bootstrap_servers=config.bootstrap_servers.split(","),
            acks="all",
            enable_idempotence=True,
            retries=2**31 - 1,
            delivery_timeout_ms=config.delivery_timeout_ms,
            request_timeout_ms=min(30_000, max(1_000, config.delivery_timeout_ms - 1_000)),
            linger_ms=20,
            batch_size=512 * 1024,
            max_block_ms=5_000,
            bootstrap_timeout_ms=10_000,
            reconnect_backoff_max_ms=2_000,
        )
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"cannot reach a Kafka broker at {config.bootstrap_servers} ({exc}); is it running? try `make kafka`"
        ) from None


class StopFlag:
    """Set by SIGINT/SIGTERM so the loop ends, flushes and prints its summary."""

    def __init__(self):
        self.stopped = threading.Event()

    def install(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopped.set())
        return self


def run_producer(config: ProducerConfig, stop: StopFlag | None = None, out=sys.stdout) -> DeliveryStats:
    """Send events until `count` is reached or a stop signal arrives; flush; report."""
    from kafka.errors import KafkaTimeoutError

    stop = stop or StopFlag()
    producer = create_kafka_producer(config)
    stats = DeliveryStats()
    generator = EventGenerator(config.seed, config.price_max, config.late_fraction, config.max_lateness_s)
    print(
        f"producing to topic '{config.topic}' at {config.bootstrap_servers}: "
        f"{'unbounded' if config.count == 0 else config.count} events, "
        f"{'max speed' if config.rate <= 0 else f'{config.rate:g} events/s'}",
        file=out, flush=True,
    )
    started = last_report = time.monotonic()
    broker_down_since: float | None = None
    send = producer.send
    try:
        for event in generator.events(config.count):
            if stop.stopped.is_set():
                break
            payload = event.to_json_bytes()
            while True:
                try:
                    send(config.topic, payload).add_callback(stats.on_success).add_errback(stats.on_error)
                    break
                except KafkaTimeoutError:
                    # Buffer full or metadata unavailable: the broker is down. Keep the event
                    # and retry until the delivery timeout says give up.
                    now = time.monotonic()
                    broker_down_since = broker_down_since or now
                    print(f"broker unreachable at {config.bootstrap_servers}; retrying ({now - broker_down_since:.0f}s)", file=out, flush=True)
                    if (now - broker_down_since) * 1000 > config.delivery_timeout_ms or stop.stopped.is_set():
                        raise BrokerUnavailable(f"broker at {config.bootstrap_servers} unreachable for {now - broker_down_since:.0f}s; giving up") from None
            broker_down_since = None
            stats.sent += 1
            if config.rate > 0:
                ahead = started + stats.sent / config.rate - time.monotonic()
                if ahead > 0:
                    stop.stopped.wait(ahead)
            if stats.sent % 1024 == 0:
                now = time.monotonic()
                if now - last_report >= config.progress_interval_s:
                    last_report = now
                    print(_progress_line(stats, now - started), file=out, flush=True)
    finally:
        pending_note = ""
        try:
            producer.flush(timeout=config.delivery_timeout_ms / 1000)
        except KafkaTimeoutError:
            pending_note = " (flush timed out)"
        producer.close(timeout=5)
        elapsed = time.monotonic() - started
        pending = stats.sent - stats.acked - stats.failed
        print(
            f"done: sent {stats.sent}, acknowledged {stats.acked}, failed {stats.failed}, "
            f"pending {pending}{pending_note} in {elapsed:.1f}s ({stats.sent / max(elapsed, 1e-9):,.0f} events/s)"
            + (f"; last error: {stats.last_error}" if stats.last_error else ""),
            file=out, flush=True,
        )
    return stats


def _progress_line(stats: DeliveryStats, elapsed_s: float) -> str:
    return f"sent {stats.sent:,} events ({stats.sent / max(elapsed_s, 1e-9):,.0f} events/s), acknowledged {stats.acked:,}, failed {stats.failed}"


def main(argv: list[str] | None = None) -> int:
    from .config import parse_producer_config

    config = parse_producer_config(argv)
    try:
        stats = run_producer(config, StopFlag().install())
    except BrokerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 1 if stats.failed else 0
