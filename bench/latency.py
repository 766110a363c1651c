"""End-to-end latency: from an event's send to the first sink output that includes it.

Send time: the record's Kafka timestamp, which the producer client stamps when `send()`
is called (CreateTime). Output time: the mtime of the job's `batch-<id>-<query id>.jsonl`, written by
the JSON-lines sink when the micro-batch that first read the record has its totals (the
window rows include the event). Which batch read a record comes from the checkpoint:
`offsets/<id>` holds each batch's end offsets. Same host, same clock, every record counted.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

from purchase_analytics.kafka_client import KafkaSecurity

from .common import Periodic, checkpoint_offsets


def read_timestamps(
    bootstrap_servers: str, topic: str, start: dict[int, int], end: dict[int, int], security: KafkaSecurity | None = None
) -> dict[int, list[tuple[int, int]]]:
    """partition -> [(offset, timestamp_ms)] for offsets in [start, end)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","), enable_auto_commit=False, **(security or KafkaSecurity()).kafka_python_kwargs()
    )
    try:
        tps = {p: TopicPartition(topic, p) for p in end if end[p] > start.get(p, 0)}
        consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            consumer.seek(tp, start.get(p, 0))
        out: dict[int, list[tuple[int, int]]] = {p: [] for p in tps}
        remaining = set(tps)
        while remaining:
            for tp, records in consumer.poll(timeout_ms=1000, max_records=50_000).items():
                out[tp.partition].extend((r.offset, r.timestamp) for r in records if r.offset < end[tp.partition])
                if records and records[-1].offset + 1 >= end[tp.partition]:
                    remaining.discard(tp.partition)
        return out
    finally:
        consumer.close()


@dataclass
class Latencies:
    values_s: list[float]  # per record: output time minus send time
    without_output: int  # records whose batch had no output (yet)
    left_the_log: int  # records read by a batch no longer in the offset log: which one is not known


class OffsetLogRecorder(Periodic):
    """Spark keeps the last 100 batches in the offset log (spark.sql.streaming.minBatchesToRetain);
    at a 0-second trigger a warm job plans more than that in the measured seconds, so the
    log is read every `interval_s` while they last (`with`), and once more at the end, and
    every batch's end offsets are kept: batch id -> {partition: end offset}. A file is read
    once, when complete."""

    def __init__(self, query_checkpoint: Path, interval_s: float = 0.5):
        super().__init__(interval_s)
        self._checkpoint = query_checkpoint
        self.planned: dict[int, dict[int, int]] = {}

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self.sample()

    def sample(self) -> None:
        self.planned.update(checkpoint_offsets(self._checkpoint, committed_only=False, skip=self.planned))


def latencies_s(records: dict[int, list[tuple[int, int]]], planned: dict[int, dict[int, int]], output_dir: Path) -> Latencies:
    """Per record: output time minus send time. `planned` is every batch's end offsets
    (OffsetLogRecorder); a record below the oldest batch's end offset was read by it or by
    one not recorded, so it is left out, not put on the oldest batch (which had added
    seconds to the first records of a window of more than 100 batches)."""
    batch_ids = sorted(planned)
    output_s = {}
    for b in batch_ids:
        for f in output_dir.glob(f"batch-{b:012d}*.jsonl"):  # the one run of the latency job's checkpoint
            output_s[b] = f.stat().st_mtime_ns / 1e9
    result = Latencies([], 0, 0)
    for p, recs in records.items():
        ends = [planned[b].get(p, 0) for b in batch_ids]  # non-decreasing per partition
        for offset, ts_ms in recs:
            i = bisect.bisect_right(ends, offset)  # first batch whose end offset is past this record
            if i == 0 and batch_ids and batch_ids[0] != 0:
                result.left_the_log += 1
            elif i < len(batch_ids) and batch_ids[i] in output_s:
                result.values_s.append(output_s[batch_ids[i]] - ts_ms / 1000)
            else:
                result.without_output += 1
    return result


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
