"""The broker's ceiling: Kafka's own perf tools (the classes behind kafka-producer-perf-test
and kafka-consumer-perf-test) on the same broker, with our real events as the payload."""

from __future__ import annotations

import re
from pathlib import Path

from purchase_analytics.jvm import ensure_java
from purchase_analytics.runtime.local import KAFKA_JARS

from .common import Bench, run_checked

PERF_PRODUCER = "org.apache.kafka.tools.ProducerPerformance"
PERF_CONSUMER = "org.apache.kafka.tools.ConsumerPerformance"
# The same durability and batching as our producers: acks=all (idempotent by default), 20 ms linger, 1 MiB batches.
PRODUCER_PROPS = ("acks=all", "linger.ms=20", "batch.size=1048576")


def _java(main: str, *args: object) -> list[str]:
    return [ensure_java(), "-Xmx512m", "-cp", str(KAFKA_JARS / "*"), main, *map(str, args)]


def perf_produce(bench: Bench, topic: str, count: int, payload_file: Path) -> dict:
    """Fill `topic` with `count` records drawn from `payload_file`; also the producer ceiling."""
    run = run_checked(
        _java(
            PERF_PRODUCER,
            "--topic",
            topic,
            "--num-records",
            count,
            "--throughput",
            -1,
            "--payload-file",
            payload_file,
            "--producer-props",
            f"bootstrap.servers={bench.bootstrap_servers}",
            *PRODUCER_PROPS,
        ),
        timeout_s=600,
        what="kafka ProducerPerformance",
    )
    final = run.stdout.strip().splitlines()[-1]  # "N records sent, X records/sec (Y MB/sec), ... ms avg latency, ..."
    m = re.search(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency", final)
    if not m:
        raise RuntimeError(f"unexpected ProducerPerformance output: {final}")
    return {
        "events": int(m[1]),
        "events_per_s": float(m[2]),
        "mb_per_s": float(m[3]),
        "avg_latency_ms": float(m[4]),
        "peak_rss_mb": run.sampler.peak_mb_by_name(),
    }


def perf_consume(bench: Bench, topic: str, count: int) -> dict:
    out = run_checked(
        _java(PERF_CONSUMER, "--bootstrap-server", bench.bootstrap_servers, "--topic", topic, "--messages", count, "--timeout", 60_000),
        timeout_s=600,
        what="kafka ConsumerPerformance",
    ).stdout
    header, row = [line for line in out.strip().splitlines() if "," in line][-2:]
    values = dict(zip([h.strip() for h in header.split(",")], [v.strip() for v in row.split(",")], strict=True))
    return {
        "events": int(values["data.consumed.in.nMsg"]),
        "events_per_s": float(values["nMsg.sec"]),
        "events_per_s_excluding_join": float(values["fetch.nMsg.sec"]),
        "mb_per_s": float(values["MB.sec"]),
    }
