"""The plain alternative: one Python process with kafka-python reading the topic from the
start and keeping the same windowed sums (the job's validation rules, tumbling windows, a
watermark that drops events whose window it has passed). Run as `python -m bench.baseline
...`; prints one JSON object: the windows {start epoch s: [total_purchase, orders]}, the
message counts and its start-up (`first_record_s`, seconds from process start).

It reads in rounds of `--round-records`, the same number from each partition, and moves
its watermark between rounds (max event time seen minus the delay), as Spark does between
micro-batches: a partition fetched ahead of the others cannot push the watermark past
events the others have not delivered yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from purchase_analytics.config import load_security, load_settings
from purchase_analytics.defaults import setting
from purchase_analytics.events import DEFAULT_MAX_FUTURE_S, DEFAULT_PRICE_MAX, rejection_reason, window_start_s
from purchase_analytics.kafka_client import KafkaSecurity
from purchase_analytics.options import interval_seconds, positive_int

from .common import process_age_s

STALL_S = 60  # no record for this long while some are left: the topic changed under us


def consume(
    bootstrap_servers: str,
    topic: str,
    window_s: int,
    watermark_s: int,
    round_records: int = 100_000,
    price_max: int = DEFAULT_PRICE_MAX,
    max_future_s: int = DEFAULT_MAX_FUTURE_S,
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
    windows: dict[int, list[int]] = {}  # window start -> [total, orders]
    closed: set[int] = set()
    messages = rejected = dropped = 0
    max_ts = watermark = float("-inf")
    loads, reason = json.loads, rejection_reason
    first_record_s = None
    started = time.monotonic()
    buffered = {tp: [] for tp in partitions}
    left = {tp: end[tp] for tp in partitions}  # records not yet processed
    per_round = max(1, round_records // max(1, len(partitions)))
    while any(left.values()):
        # Fill: the next round's records of every partition.
        last_record = time.monotonic()
        while any(len(buffered[tp]) < min(per_round, left[tp]) for tp in partitions):
            for tp, records in consumer.poll(timeout_ms=500, max_records=100_000).items():
                buffered[tp].extend(records)
                last_record = time.monotonic()
                if first_record_s is None:
                    first_record_s = process_age_s()
            if time.monotonic() - last_record > STALL_S:
                raise SystemExit(f"error: no record from {topic} for {STALL_S} s with {sum(left.values())} left to read")
        # Process the round with the watermark of the rounds before it.
        for tp in partitions:
            take = min(per_round, left[tp])
            records, buffered[tp] = buffered[tp][:take], buffered[tp][take:]
            left[tp] -= take
            for record in records:
                messages += 1
                try:
                    event = loads(record.value)
                except ValueError:
                    rejected += 1
                    continue
                if reason(event, price_max, max_future_s, time.time()) is not None:  # the job's rules (events.py)
                    rejected += 1
                    continue
                ts = event["ts"]
                start = window_start_s(ts, window_s)
                if start + window_s <= watermark:
                    dropped += 1
                    continue
                acc = windows.get(start)
                if acc is None:
                    acc = windows[start] = [0, 0]
                acc[0] += event["price"]
                acc[1] += 1
                if ts > max_ts:
                    max_ts = ts
        watermark = max(watermark, max_ts - watermark_s)
        closed.update(s for s in windows if s + window_s <= watermark and s not in closed)  # final: a real consumer emits them here
    elapsed = time.monotonic() - started
    consumer.close()
    return {
        "messages": messages,
        "valid": messages - rejected,
        "rejected": rejected,
        "dropped_late": dropped,
        "first_record_s": first_record_s,
        "elapsed_s": round(elapsed, 2),
        "events_per_s": round(messages / max(elapsed, 1e-9)),
        "windows_closed": len(closed),
        "windows": {str(k): v for k, v in sorted(windows.items())},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    settings = load_settings()
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--window-s", type=positive_int, default=int(interval_seconds(setting(settings, "WINDOW_DURATION"))))
    p.add_argument("--watermark-s", type=int, default=int(interval_seconds(setting(settings, "WATERMARK_DELAY"))))
    p.add_argument("--round-records", type=positive_int, default=100_000, help="records per round, over all partitions")
    p.add_argument("--price-max", type=positive_int, default=int(setting(settings, "PRICE_MAX")))
    p.add_argument("--max-future-s", type=int, default=int(setting(settings, "EVENT_MAX_FUTURE_S")))
    a = p.parse_args(argv)
    result = consume(
        a.bootstrap_servers, a.topic, a.window_s, a.watermark_s, a.round_records, a.price_max, a.max_future_s, load_security(settings)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
