"""Traffic that looks like a day of real purchases, for the throughput figures: the
producer's events (its field draws and wire form), event times spread over `span_s` and
ending a little before now, mostly ascending with a small backward jitter, a small share
of invalid messages of several kinds, and a small share of very late events.

The data is built so that every correct system computes the same windows whatever its
batch sizes and watermark timing:
- an on-time event is at most `jitter_s` older than the newest event before it, well under
  the watermark delay, so no system drops it;
- a late event carries a time from the day before the stream's first event, and none comes
  before `first_late_index`, so every system has its watermark past it and drops it. That
  index is past the job's first two micro-batches and the first few % of the stream: Spark
  (3.4 and later) drops late rows by the previous batch's watermark, and the first batch
  has none, so the first two batches drop nothing;
- event i goes to partition i % partitions, so the partitions advance through event time
  together and a reader that takes the same number of records from each stays aligned.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from purchase_analytics.producer import EventGenerator

# Kinds of invalid messages, drawn in turn: what the job (and every peer) must reject.
INVALID_KINDS = ("not JSON", "wrong type", "price out of range", "content after the object")
END_BEFORE_NOW_S = 60  # the last event time: the job rejects times more than EVENT_MAX_FUTURE_S ahead
FIRST_LATE_SHARE = 0.05  # no late event in the first 5% of the stream


@dataclass(frozen=True)
class TrafficPlan:
    events: int
    span_s: float
    end_s: float  # epoch seconds of the newest on-time event
    jitter_s: float
    invalid_fraction: float
    late_fraction: float
    first_late_index: int
    late_gap_s: float  # a late event is at least this much older than the first event
    partitions: int
    price_max: int
    seed: int

    @property
    def start_s(self) -> float:
        return self.end_s - self.span_s


def plan_traffic(
    events: int,
    span_s: float,
    jitter_s: float,
    invalid_fraction: float,
    late_fraction: float,
    max_offsets_per_trigger: int,
    window_s: int,
    watermark_s: int,
    partitions: int,
    price_max: int,
    seed: int,
    now_s: float | None = None,
) -> TrafficPlan:
    """The plan, checked: a jitter under the watermark, late events only where every
    system drops them (after the first two micro-batches and the first few % of the stream)."""
    if jitter_s >= watermark_s:
        raise ValueError(f"the event-time jitter ({jitter_s:g} s) must be well under the watermark delay ({watermark_s} s)")
    if invalid_fraction + late_fraction >= 0.5:
        raise ValueError("invalid and late events must stay a small share of the traffic")
    first_late = max(2 * max_offsets_per_trigger, int(events * FIRST_LATE_SHARE))
    if late_fraction and first_late >= events:
        raise ValueError(
            f"no room for late events: the first two micro-batches ({max_offsets_per_trigger:,} events each) hold all {events:,}"
        )
    end_s = int((time.time() if now_s is None else now_s) - END_BEFORE_NOW_S)
    if span_s < 2 * window_s:  # a short span (the smoke run) is laid across a window boundary: two windows to compare
        end_s = int((end_s - span_s / 2) // window_s * window_s + span_s / 2)
    return TrafficPlan(
        events=events,
        span_s=span_s,
        end_s=end_s,
        jitter_s=jitter_s,
        invalid_fraction=invalid_fraction,
        late_fraction=late_fraction,
        first_late_index=first_late,
        late_gap_s=watermark_s + window_s + jitter_s,
        partitions=partitions,
        price_max=price_max,
        seed=seed,
    )


@dataclass
class TrafficCounts:
    on_time: int = 0
    late: int = 0
    invalid: int = 0
    invalid_by_kind: dict | None = None

    def __post_init__(self):
        self.invalid_by_kind = dict.fromkeys(INVALID_KINDS, 0)


def messages(plan: TrafficPlan, counts: TrafficCounts) -> Iterator[tuple[int, bytes]]:
    """(partition, value) for every message, in send order; `counts` is kept up to date."""
    rng = random.Random(plan.seed + 1)  # the shape of the traffic; the fields come from the producer's own generator
    clock = [0.0]
    generator = EventGenerator(seed=plan.seed, price_max=plan.price_max, clock=lambda: clock[0])
    # Late events are spread evenly over what follows first_late_index, at the same overall share.
    late_share = plan.late_fraction * plan.events / max(1, plan.events - plan.first_late_index)
    invalid_share, step, start, jitter = plan.invalid_fraction, plan.span_s / plan.events, plan.start_s, plan.jitter_s
    partitions, next_payload, draw = plan.partitions, generator.next_payload, rng.random
    for i in range(plan.events):
        clock[0] = start + i * step - draw() * jitter
        r = draw()
        if r < invalid_share:
            kind = INVALID_KINDS[counts.invalid % len(INVALID_KINDS)]
            counts.invalid += 1
            counts.invalid_by_kind[kind] += 1
            yield i % partitions, invalid_message(generator.next_event(), kind, rng, plan.price_max)
            continue
        if i >= plan.first_late_index and r < invalid_share + late_share:
            clock[0] = start - plan.late_gap_s - draw() * plan.span_s
            counts.late += 1
        else:
            counts.on_time += 1
        yield i % partitions, next_payload()


def invalid_message(event, kind: str, rng: random.Random, price_max: int) -> bytes:
    fields = asdict(event)
    if kind == "not JSON":
        return event.to_json_bytes()[: -1 - int(rng.random() * 20)]  # cut short
    if kind == "wrong type":
        name = ("price", "customer_id", "ts")[int(rng.random() * 3)]
        fields[name] = str(fields[name]) if name != "customer_id" else fields[name] + 0.5
        return json.dumps(fields).encode()
    if kind == "price out of range":
        fields["price"] = (0, -fields["price"], price_max + 1 + fields["price"])[int(rng.random() * 3)]
        return json.dumps(fields).encode()
    return event.to_json_bytes() + (b' {"order_id": "x"}', b"x", b"]")[int(rng.random() * 3)]


def fill(bootstrap_servers: str, topic: str, plan: TrafficPlan) -> dict:
    """Send the traffic with confluent-kafka (large batches, no compression, idempotent so
    retries keep the order); returns the counts and the fill time."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "none",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "log_level": 3,  # errors; not the broker's "coordinator load in progress" retries at start
        }
    )
    counts = TrafficCounts()
    produce, poll = producer.produce, producer.poll
    sent = value_bytes = 0
    t0 = time.monotonic()
    for partition, value in messages(plan, counts):
        try:
            produce(topic, value, partition=partition)
        except BufferError:
            poll(0.05)
            produce(topic, value, partition=partition)
        sent += 1
        value_bytes += len(value)
        if sent & 0x3FFF == 0:
            poll(0)
    remaining = producer.flush(300)
    elapsed = time.monotonic() - t0
    if remaining:
        raise RuntimeError(f"the traffic fill left {remaining} messages undelivered")
    return {
        "events": sent,
        "on_time": counts.on_time,
        "late": counts.late,
        "invalid": counts.invalid,
        "invalid_by_kind": counts.invalid_by_kind,
        "seconds": round(elapsed, 2),
        "events_per_s": round(sent / max(elapsed, 1e-9)),
        "mean_value_bytes": round(value_bytes / max(sent, 1)),
        "plan": asdict(plan),
    }
