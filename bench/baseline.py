"""The plain alternative: one Python process with kafka-python reading the topic from the
start and keeping the same windowed sums (same validation rules, tumbling windows, a
watermark that drops windows behind it). Run as `python -m bench.baseline ...`; prints JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time

from purchase_analytics.config import load_settings
from purchase_analytics.events import DEFAULT_MAX_FUTURE_S, DEFAULT_PRICE_MAX, rejection_reason, window_start_s
from purchase_analytics.kafka_client import KafkaSecurity, load_security


def valid_event(e, price_max: int = DEFAULT_PRICE_MAX, max_future_s: int = DEFAULT_MAX_FUTURE_S) -> bool:
    """The job's rules (events.py), in Python: the right JSON types and ranges."""
    return rejection_reason(e, price_max, max_future_s, time.time()) is None


def consume(
    bootstrap_servers: str,
    topic: str,
    window_s: int,
    watermark_s: int,
    price_max: int = DEFAULT_PRICE_MAX,
    security: KafkaSecurity | None = None,
) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","),
        enable_auto_commit=False,
        **(security or KafkaSecurity()).kafka_python_kwargs(),
        fetch_max_bytes=64 * 2**20,
        max_partition_fetch_bytes=16 * 2**20,
    )
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    open_windows: dict[int, list[int]] = {}  # window start -> [total, orders]
    closed: dict[int, list[int]] = {}
    messages = rejected = dropped = 0
    max_ts = watermark = float("-inf")
    loads = json.loads
    started = time.monotonic()
    remaining = {tp for tp in partitions if end[tp] > 0}
    while remaining:
        for tp, records in consumer.poll(timeout_ms=500, max_records=100_000).items():
            for record in records:
                messages += 1
                try:
                    event = loads(record.value)
                except ValueError:
                    rejected += 1
                    continue
                if not valid_event(event, price_max):
                    rejected += 1
                    continue
                ts = event["ts"]
                start = window_start_s(ts, window_s)
                if start + window_s <= watermark:
                    dropped += 1
                    continue
                acc = open_windows.get(start)
                if acc is None:
                    acc = open_windows[start] = [0, 0]
                acc[0] += event["price"]
                acc[1] += 1
                if ts > max_ts:
                    max_ts = ts
            if records and records[-1].offset + 1 >= end[tp]:
                remaining.discard(tp)
        # Like Spark, the watermark moves between batches: max event time seen minus the delay.
        watermark = max(watermark, max_ts - watermark_s)
        for start in [s for s in open_windows if s + window_s <= watermark]:
            closed[start] = open_windows.pop(start)
    elapsed = time.monotonic() - started
    consumer.close()
    totals = {**closed, **open_windows}
    return {
        "events": messages,
        "rejected": rejected,
        "dropped_late": dropped,
        "elapsed_s": round(elapsed, 2),
        "events_per_s": round(messages / elapsed),
        "windows": {str(k): v for k, v in sorted(totals.items())},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--window-s", type=int, default=600)
    p.add_argument("--watermark-s", type=int, default=600)
    settings = load_settings()
    p.add_argument("--price-max", type=int, default=int(settings.get("PRICE_MAX", DEFAULT_PRICE_MAX)))
    a = p.parse_args(argv)
    print(json.dumps(consume(a.bootstrap_servers, a.topic, a.window_s, a.watermark_s, a.price_max, load_security(settings))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
