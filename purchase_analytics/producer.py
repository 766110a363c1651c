"""Purchase event generation and the Kafka send loop.

Generation draws from pools precomputed once (Faker's safe colors, the furniture list)
with one seeded `random.Random`, so a seed gives the same event sequence and the hot
loop never calls Faker per field. Two client backends: kafka-python (the default) and
the optional confluent-kafka (librdkafka, `pip install confluent-kafka`), several
times faster per event because batching and delivery reports happen in C.
"""

from __future__ import annotations

import json
import random
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from faker.providers.color import Provider as ColorProvider

from .config import ProducerConfig
from .events import CUSTOMER_ID_MAX, FURNITURE, PRICE_MIN, WIRE_FORMAT, PurchaseEvent
from .kafka_client import ClientErrorLog, diagnose_connection, explain_failure
from .signals import set_on_signal

COLORS = tuple(ColorProvider.safe_colors)
# uuid4 bits, as uuid.UUID(int=..., version=4) sets them, without building a UUID object.
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)


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
        self.next_payload: Callable[[], bytes] = _payload_function(random.Random(seed), price_max, late_fraction, max_lateness_s, clock)

    def next_event(self) -> PurchaseEvent:
        """The next event as a value: the next payload, read back (the same draws, so a
        seed gives the same events either way)."""
        return PurchaseEvent(**json.loads(self.next_payload()))

    def events(self, count: int = 0) -> Iterator[PurchaseEvent]:
        """`count` events, or an endless stream when count is 0."""
        produced = 0
        while count == 0 or produced < count:
            yield self.next_event()
            produced += 1


def _payload_function(
    rng: random.Random, price_max: int, late_fraction: float, max_lateness_s: int, clock: Callable[[], float]
) -> Callable[[], bytes]:
    """The send loop's hot path: one event's wire bytes (`events.WIRE_FORMAT`) per call,
    with everything it reads bound once as a local. `random()` scaled to a range costs a
    third of `randint`; the order id is uuid4's bits without a UUID object."""
    rnd, bits = rng.random, rng.getrandbits
    lateness, price_span = max(1, max_lateness_s), price_max - PRICE_MIN + 1
    furniture, n_furniture, colors, n_colors = FURNITURE, len(FURNITURE), COLORS, len(COLORS)

    def next_payload() -> bytes:
        ts = int(clock())
        if late_fraction and rnd() < late_fraction:
            ts -= 1 + int(rnd() * lateness)
        h = f"{bits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"
        return (
            WIRE_FORMAT
            % (
                f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
                1 + int(rnd() * CUSTOMER_ID_MAX),
                furniture[int(rnd() * n_furniture)],
                colors[int(rnd() * n_colors)],
                PRICE_MIN + int(rnd() * price_span),
                ts,
            )
        ).encode()

    return next_payload


@dataclass
class DeliveryStats:
    """Send and delivery counts, all written on the send loop's thread (kafka-python
    futures are reaped there; confluent-kafka reports failed deliveries inside its
    `poll()`, which then counts the rest as acknowledged)."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    last_error: str | None = None
    fatal: str | None = None  # authentication/TLS/authorization: retrying cannot help, the loop stops

    def on_error(self, exc: BaseException, explain: Callable[[BaseException], str | None] = lambda _: None) -> None:
        self.failed += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.fatal = self.fatal or explain(exc)

    @property
    def pending(self) -> int:
        return self.sent - self.acked - self.failed


class BrokerUnavailable(RuntimeError):
    pass


class BufferFull(Exception):
    """The client's local queue is full (or it has no metadata): the broker is not keeping up or is down."""


class SecurityFailure(RuntimeError):
    """Authentication, TLS or authorization: one line naming the cause."""


def _unreachable(config: ProducerConfig, detail: object, log: ClientErrorLog | None = None) -> RuntimeError:
    cause = explain_failure(detail, config.security, config.bootstrap_servers, config.topic, "write to", log) or diagnose_connection(
        config.security, config.bootstrap_servers
    )
    if cause:
        return SecurityFailure(cause)
    return BrokerUnavailable(f"cannot reach a Kafka broker at {config.bootstrap_servers} ({detail}); is it running? try `make kafka`")


def _explainer(config: ProducerConfig, log: ClientErrorLog | None = None) -> Callable[[BaseException], str | None]:
    return lambda exc: explain_failure(exc, config.security, config.bootstrap_servers, config.topic, "write to", log)


class KafkaPythonSender:
    """kafka-python, tuned for throughput without giving up durability: acks=all +
    idempotence, large batches, a short linger. Its per-record cost is in Python, so the
    loop picks the partition itself (sticky, like the Java client, skipping the
    partitioner) and reaps delivery futures in order instead of registering two callbacks
    per record."""

    def __init__(self, config: ProducerConfig, stats: DeliveryStats):
        from kafka import KafkaProducer
        from kafka.errors import KafkaError, KafkaTimeoutError

        self._stats = stats
        self._topic = config.topic
        self._explain = _explainer(config)
        linger_ms = 20
        with ClientErrorLog() as log:  # a refused login or TLS handshake shows up only in kafka-python's log
            try:
                self._producer = KafkaProducer(
                    bootstrap_servers=config.bootstrap_servers.split(","),
                    acks="all",
                    enable_idempotence=True,
                    retries=2**31 - 1,
                    delivery_timeout_ms=config.delivery_timeout_ms,
                    request_timeout_ms=min(30_000, max(1_000, config.delivery_timeout_ms - 1_000)),
                    linger_ms=linger_ms,
                    batch_size=512 * 1024,
                    max_block_ms=5_000,
                    bootstrap_timeout_ms=10_000,
                    reconnect_backoff_max_ms=2_000,
                    **config.security.kafka_python_kwargs(),
                )
                self._partitions = sorted(self._producer.partitions_for(config.topic))
            except KafkaError as exc:
                raise _unreachable(config, exc, log) from None
        # Switch partition after this many records: a batch's worth at full speed, every
        # record at low rates (as the sticky partitioner does when each batch holds one).
        self._turn = 2000 if config.rate <= 0 else max(1, min(2000, int(config.rate * linger_ms / 1000)))
        self._in_turn = 0
        self._partition_index = 0
        self._futures: deque = deque()
        self._buffer_full = KafkaTimeoutError  # bound once: an import per record was 4% of the loop

    def send(self, payload: bytes) -> None:
        if self._in_turn >= self._turn:
            self._in_turn = 0
            self._partition_index = (self._partition_index + 1) % len(self._partitions)
        try:
            self._futures.append(self._producer.send(self._topic, payload, partition=self._partitions[self._partition_index]))
        except self._buffer_full as exc:
            raise BufferFull(str(exc)) from None
        self._in_turn += 1

    def poll(self) -> None:
        """Count the records whose delivery has finished, oldest first."""
        futures, stats = self._futures, self._stats
        while futures and futures[0].is_done:
            future = futures.popleft()
            if future.exception is None:
                stats.acked += 1
            else:
                stats.on_error(future.exception, self._explain)

    def flush(self, timeout_s: float) -> bool:
        from kafka.errors import KafkaError, KafkaTimeoutError

        deadline = time.monotonic() + timeout_s
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaTimeoutError:
            pass
        except KafkaError:  # kafka-python 3.0.12 gives up on a batch it split for the broker (`Future not done`)
            while self._futures and time.monotonic() < deadline:  # its records still end, each on its own future
                self.poll()
                time.sleep(0.01)
        self.poll()
        return not self._futures

    def close(self) -> None:
        self._producer.close(timeout=5)


class ConfluentSender:
    """confluent-kafka (librdkafka): batching, sticky partitioning and retries run in C
    threads; delivery reports arrive through `poll()` on this thread."""

    def __init__(self, config: ProducerConfig, stats: DeliveryStats):
        try:
            from confluent_kafka import KafkaError, KafkaException, Producer
        except ImportError:
            raise SystemExit("error: --backend confluent needs confluent-kafka (pip install -r requirements-dev.txt)") from None
        self._stats = stats
        self._topic = config.topic
        self._kafka_error = KafkaError
        self._errors = errors = ClientErrorLog()  # librdkafka's errors and log lines, for the one-line cause
        self._exception = KafkaException
        self._explain = explain = _explainer(config, errors)

        def on_delivery(err, _msg):  # failures only (delivery.report.only.error); poll() counts the rest
            stats.on_error(KafkaException(err), explain)

        def on_error(err):
            errors.messages.append(err.str())
            if err.fatal():
                stats.fatal = stats.fatal or explain(err.str())

        self._producer = Producer(
            {
                "bootstrap.servers": config.bootstrap_servers,
                "acks": "all",
                "enable.idempotence": True,
                "message.timeout.ms": config.delivery_timeout_ms,
                "linger.ms": 20,
                "batch.size": 1024 * 1024,
                "queue.buffering.max.messages": 500_000,
                "on_delivery": on_delivery,
                "delivery.report.only.error": True,  # a Python callback per acknowledged event cost a tenth of the loop
                "error_cb": on_error,
                "logger": errors.quiet_logger(),  # connection errors surface through list_topics / delivery reports, not stderr noise
                **config.security.confluent_config(),
            }
        )
        try:
            self._producer.list_topics(config.topic, timeout=10)
        except KafkaException as exc:
            self._producer.poll(0)  # serves error_cb: why the metadata request failed
            raise _unreachable(config, exc.args[0].str() if exc.args else exc, errors) from None
        self._produce = self._producer.produce

    def send(self, payload: bytes) -> None:
        try:
            self._produce(self._topic, payload)
        except BufferError as exc:
            raise BufferFull(str(exc)) from None
        except self._exception as exc:  # fatal (e.g. no idempotent-write permission): count it, stop the loop
            self._producer.poll(0)
            self._stats.on_error(exc, self._explain)
            self._stats.fatal = self._stats.fatal or str(exc)

    def poll(self) -> None:
        """Serve failed deliveries, then count as acknowledged every event sent that is
        neither failed nor still in librdkafka's queue (its length also counts reports and
        callbacks not yet served, so this never counts an event too early)."""
        producer = self._producer
        producer.poll(0)
        stats = self._stats
        stats.acked = max(stats.acked, stats.sent - stats.failed - len(producer))

    def flush(self, timeout_s: float) -> bool:
        try:
            return self._producer.flush(timeout_s) == 0
        except (self._exception, SystemError):  # a fatal error (e.g. not authorized) already counted
            return False
        finally:
            self.poll()

    def close(self) -> None:
        self.flush(0)


def create_sender(config: ProducerConfig, stats: DeliveryStats):
    return ConfluentSender(config, stats) if config.backend == "confluent" else KafkaPythonSender(config, stats)


class StopFlag:
    """Set by SIGINT/SIGTERM so the loop ends, flushes and prints its summary."""

    def __init__(self):
        self.stopped = threading.Event()

    def install(self) -> StopFlag:
        set_on_signal(self.stopped, signal.SIGINT, signal.SIGTERM)
        return self


POLL_EVERY = 1024  # at most this many records between delivery reaping, stop checks and progress lines
PACE_S = 0.001  # with a rate, events go out in bursts of at most this much of it (a wait per event cost more than the event)


def run_producer(config: ProducerConfig, stop: StopFlag | None = None, out=sys.stdout) -> DeliveryStats:
    """Send events until `count` is reached or a stop signal arrives; flush; report."""
    stop = stop or StopFlag()
    stats = DeliveryStats()
    sender = create_sender(config, stats)
    generator = EventGenerator(config.seed, config.price_max, config.late_fraction, config.max_lateness_s)
    print(
        f"producing to topic '{config.topic}' at {config.bootstrap_servers} with {config.backend}: "
        f"{'unbounded' if config.count == 0 else config.count} events, "
        f"{'max speed' if config.rate <= 0 else f'{config.rate:g} events/s'}",
        file=out,
        flush=True,
    )
    started = last_report = time.monotonic()
    acked_at_last_report = 0
    send, next_payload, count, rate = sender.send, generator.next_payload, config.count, config.rate
    try:
        while (count == 0 or stats.sent < count) and not stop.stopped.is_set() and not stats.fatal:
            burst = POLL_EVERY if count == 0 else min(POLL_EVERY, count - stats.sent)
            if rate > 0:  # event i is due at `started + i / rate`
                now = time.monotonic()
                due = int((now - started) * rate) + 1 - stats.sent
                if due <= 0:
                    sender.poll()
                    stop.stopped.wait(max(PACE_S, started + stats.sent / rate - now))
                    continue
                burst = min(burst, due)
            for _ in range(burst):
                payload = next_payload()
                try:
                    send(payload)
                except BufferFull:
                    _wait_for_room(sender, send, payload, config, stop, out)
                stats.sent += 1
                if stats.fatal:
                    break
            sender.poll()
            now = time.monotonic()
            if now - last_report >= config.progress_interval_s:
                print(_progress_line(stats, now - started), file=out, flush=True)
                if stats.pending and stats.acked == acked_at_last_report:
                    print(
                        f"no acknowledgement for {now - last_report:.0f}s: is the broker at {config.bootstrap_servers} down? "
                        f"{stats.pending:,} events pending, retried for up to {config.delivery_timeout_ms / 1000:.0f}s",
                        file=out,
                        flush=True,
                    )
                last_report, acked_at_last_report = now, stats.acked
    finally:
        flushed = sender.flush(config.delivery_timeout_ms / 1000)
        sender.close()
        elapsed = time.monotonic() - started
        if config.summary_file:
            _write_summary(config.summary_file, stats, elapsed, flushed)
        print(
            f"done: sent {stats.sent}, acknowledged {stats.acked}, failed {stats.failed}, "
            f"pending {stats.pending}{'' if flushed else ' (flush timed out)'} "
            f"in {elapsed:.1f}s ({stats.sent / max(elapsed, 1e-9):,.0f} events/s)"
            + (f"; last error: {stats.last_error}" if stats.last_error else ""),
            file=out,
            flush=True,
        )
    return stats


def _write_summary(path: str, stats: DeliveryStats, elapsed_s: float, flushed: bool) -> None:
    """The run's figures as JSON, for programs (the benchmark) rather than people."""
    summary = {
        "sent": stats.sent,
        "acked": stats.acked,
        "failed": stats.failed,
        "pending": stats.pending,
        "flushed": flushed,
        "elapsed_s": round(elapsed_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # the kernel's own peak (Linux: kB)
        "events_per_s": round(stats.sent / max(elapsed_s, 1e-9), 1),
        "last_error": stats.last_error,
    }
    Path(path).write_text(json.dumps(summary) + "\n")


def _wait_for_room(sender, send, payload: bytes, config: ProducerConfig, stop: StopFlag, out) -> None:
    """The local buffer is full or metadata is missing: keep the event and retry; a broker
    down for longer than the delivery timeout is an error. Returns once `payload` is queued."""
    down_since = time.monotonic()
    last_note = 0.0
    while True:
        sender.poll()
        now = time.monotonic()
        if now - down_since > 1 and now - last_note >= 1:  # a full buffer for a moment is just back-pressure
            last_note = now
            print(f"broker unreachable at {config.bootstrap_servers}; retrying ({now - down_since:.0f}s)", file=out, flush=True)
        if (now - down_since) * 1000 > config.delivery_timeout_ms or stop.stopped.is_set():
            raise BrokerUnavailable(f"broker at {config.bootstrap_servers} unreachable for {now - down_since:.0f}s; giving up")
        time.sleep(0.01)
        try:
            send(payload)
            return
        except BufferFull:
            continue


def _progress_line(stats: DeliveryStats, elapsed_s: float) -> str:
    rate = stats.sent / max(elapsed_s, 1e-9)
    return f"sent {stats.sent:,} events ({rate:,.0f} events/s), acknowledged {stats.acked:,}, failed {stats.failed}"


def main(argv: list[str] | None = None) -> int:
    from .config import parse_producer_config

    config = parse_producer_config(argv)
    try:
        stats = run_producer(config, StopFlag().install())
    except (BrokerUnavailable, SecurityFailure) as exc:
        not_sent = f"; {config.count} events not sent" if config.count else ""
        print(f"error: {exc}{not_sent}", file=sys.stderr, flush=True)
        return 2
    if stats.fatal:
        not_sent = f", {config.count - stats.sent} never sent" if config.count else ""
        print(f"error: {stats.fatal}; {stats.failed} events failed{not_sent}", file=sys.stderr, flush=True)
    return 1 if stats.failed else 0
