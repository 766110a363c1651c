"""Benchmark peer: the job's windows in Quix Streams, as a Quix user would write them.

Each message is parsed and checked with the job's own rules (`events.parse_json_value`,
`events.rejection_reason`); valid events take their `ts` as the Quix timestamp, are
re-keyed through a repartition topic (`group_by`: Quix windows are per message key, and
the traffic's messages have none) and summed in a tumbling window whose grace is the
watermark delay. The key is the event's source partition: Quix reads the partitions at
different paces (it serves the lowest partition number first, and waits for its
repartition topic's partition of the same number), so with one key for all, the grace
judged one partition's events against another partition's hours-later event times and
dropped up to 29% of them (docs/performance.md, Peers). Per source partition, as each
Flink source split keeps its own watermark, the grace judges each event against its own
partition's time; a window's total is the sum over the keys. The program stops once
every partition's end offset, taken at start, is processed and every re-keyed event has
reached the window; it prints every window's final totals, open ones included (the
baseline does the same). Run with .venv-quix (make bench-peers):
`.venv-quix/bin/python -m bench.quix_peer --bootstrap-servers B --topic T`."""

from __future__ import annotations

import sys
import tempfile
import time
import uuid

from purchase_analytics.events import RejectedValue, parse_json_value, rejection_reason

from .peer_common import PeerArgs, PeerError, PeerResult, import_peer_module, parse_peer_args, run_peer


def end_offsets(bootstrap_servers: str, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (earliest, end) offsets, with librdkafka (Quix's own client)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"bench-quix-offsets-{uuid.uuid4().hex}"})
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise PeerError(f"topic {topic!r} not found at {bootstrap_servers}")
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in sorted(info.partitions)}
    except KafkaException as exc:
        raise PeerError(f"cannot read the offsets of {topic!r} at {bootstrap_servers}: {exc.args[0]}") from None
    finally:
        consumer.close()


class Progress:
    """Counts, and the stop rule: every source partition at its end offset and every valid
    event through the repartition topic."""

    def __init__(self, result: PeerResult, args: PeerArgs, ends: dict[int, tuple[int, int]]):
        self.result = result
        self.args = args
        self.last_offset = {p: end - 1 for p, (begin, end) in ends.items() if end > begin}
        self.regrouped = 0
        self.windows: dict[tuple[str, int], list[int]] = {}  # (key: the source partition, window start s) -> [total, orders]
        self.app = None

    def check(self, raw: bytes | None):
        """The parsed event, or None for a rejected message (the job's rules)."""
        result = self.result
        if result.messages == 0:
            result.extra["first_record_s"] = result.startup_s = round(result.since_start(), 3)
        result.messages += 1
        try:
            event = parse_json_value(raw)
        except RejectedValue:
            return None
        if rejection_reason(event, self.args.price_max, self.args.max_future_s, time.time()) is not None:
            return None
        result.valid += 1
        return event

    def on_late(self, *_late) -> bool:
        self.result.dropped_late += 1
        return False  # counted, not logged

    def on_processed(self, topic: str, partition: int, offset: int) -> None:
        if topic == self.args.topic:
            if offset >= self.last_offset.get(partition, offset + 1):
                del self.last_offset[partition]
        else:
            self.regrouped += 1
        if self.done():
            self.app.stop()

    def done(self) -> bool:
        return not self.last_offset and self.regrouped == self.result.valid

    def on_window(self, window: dict, key: str, _timestamp_ms: int, _headers) -> None:
        self.windows[key, window["start"] // 1000] = [window["total_purchase"], window["orders"]]

    def totals(self) -> dict[int, list[int]]:
        """Each window's total and orders over every key."""
        summed: dict[int, list[int]] = {}
        for (_, start), (total, orders) in self.windows.items():
            acc = summed.setdefault(start, [0, 0])
            acc[0] += total
            acc[1] += orders
        return dict(sorted(summed.items()))


def count_windows(args: PeerArgs, result: PeerResult, ends: dict[int, tuple[int, int]]) -> None:
    from quixstreams import Application, message_context
    from quixstreams.dataframe.windows import Count, Sum

    progress = Progress(result, args, ends)
    if progress.done():  # an empty topic: nothing to wait for
        return
    group = f"bench-quix-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="quix-state-") as state_dir:
        app = progress.app = Application(
            broker_address=args.bootstrap_servers,
            consumer_group=group,
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
            # A one-off recount keeps its window state in a temporary directory: nothing to
            # restore from a changelog topic later, so none is written.
            use_changelog_topics=False,
            on_message_processed=progress.on_processed,
        )
        sdf = app.dataframe(app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes"))
        sdf = sdf.apply(progress.check).filter(lambda event: event is not None)
        sdf = sdf.set_timestamp(lambda event, key, timestamp_ms, headers: int(event["ts"] * 1000))
        sdf = sdf.apply(lambda event: {"price": event["price"]})  # only what the window needs crosses the repartition topic
        sdf = regroup(sdf, lambda _event: str(message_context().partition))
        windows = sdf.tumbling_window(duration_ms=args.window_s * 1000, grace_ms=args.watermark_s * 1000, on_late=progress.on_late)
        windows.agg(total_purchase=Sum("price"), orders=Count()).current().update(progress.on_window, metadata=True)
        try:
            app.run()
        finally:
            delete_internal_topics(args.bootstrap_servers, group)
    result.windows.update(progress.totals())


def regroup(sdf, key):
    """Re-key every event by `key(event)` through a repartition topic. Quix creates the topic and
    reads it back at once; a broker that does not list it yet makes Quix raise
    TopicNotFoundError, and the next try finds it."""
    from quixstreams.models.topics.exceptions import TopicNotFoundError

    deadline = time.monotonic() + 30
    while True:
        try:
            return sdf.group_by(key, name="source_partition")
        except TopicNotFoundError:
            if time.monotonic() > deadline:
                raise PeerError("Quix's repartition topic was created but the broker did not list it within 30 s") from None
            time.sleep(0.5)


def delete_internal_topics(bootstrap_servers: str, group: str) -> None:
    """The repartition topic Quix made for this run's consumer group (best effort: a run that
    failed says why on its own)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    try:
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith("repartition__") and f"__{group}--" in t]
        for future in admin.delete_topics(names, operation_timeout=30).values() if names else ():
            future.result()
    except KafkaException as exc:
        print(f"warning: Quix's repartition topic for {group} not deleted: {exc.args[0]}", file=sys.stderr)


def run(argv: list[str] | None) -> PeerResult:
    args, _ = parse_peer_args("python -m bench.quix_peer", __doc__, argv)
    quixstreams = import_peer_module("quixstreams", "quix")
    result = PeerResult("quix", quixstreams.__version__, args)
    ends = end_offsets(args.bootstrap_servers, args.topic)
    result.extra["partitions"] = len(ends)
    count_windows(args, result, ends)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_peer(run, argv)


if __name__ == "__main__":
    sys.exit(main())
