"""The dashboard's fold of the Kafka records, without a broker."""

import json

from purchase_analytics.dashboard.state import PipelineState


def result(start: str, end: str, total: int, orders: int, batch_id: int) -> bytes:
    return json.dumps({"window_start": start, "window_end": end, "total_purchase": total, "orders": orders, "batch_id": batch_id}).encode()


def metrics(batch_id: int, watermark: str | None, end_offsets: dict, dropped_late: int = 0) -> bytes:
    return json.dumps(
        {
            "run_id": "r",
            "batch_id": batch_id,
            "timestamp": "2026-11-25T09:12:03.123Z",
            "input_rows": 10,
            "input_rows_per_s": 5.0,
            "processed_rows_per_s": 50.0,
            "batch_duration_ms": 200,
            "messages": 10,
            "valid": 9,
            "rejected": 1,
            "dropped_late": dropped_late,
            "state_rows": 2,
            "watermark": watermark,
            "topic": "t",
            "end_offsets": end_offsets,
        }
    ).encode()


def test_latest_value_per_window_wins_and_a_replayed_batch_counts_once():
    state = PipelineState()
    state.apply_result(b"2026-11-25T09:00:00Z", result("2026-11-25T09:00:00Z", "2026-11-25T09:10:00Z", 100, 1, 0))
    state.apply_result(b"2026-11-25T09:00:00Z", result("2026-11-25T09:00:00Z", "2026-11-25T09:10:00Z", 300, 2, 1))
    state.apply_result(b"2026-11-25T09:10:00Z", result("2026-11-25T09:10:00Z", "2026-11-25T09:20:00Z", 50, 1, 1))
    state.apply_result(b"2026-11-25T09:10:00Z", result("2026-11-25T09:10:00Z", "2026-11-25T09:20:00Z", 50, 1, 1))  # replay
    for batch in (0, 1, 1):  # batch 1 replayed after a restart
        state.apply_metrics(metrics(batch, "2026-11-25T09:12:00.000Z", {"0": 8, "1": 4}, dropped_late=2))
    state.end_offsets = {0: 10, 1: 4}

    view = state.view(last_windows=12)
    assert [(w["window_start"], w["total_purchase"], w["orders"], w["final"]) for w in view["windows"]] == [
        ("2026-11-25T09:00:00Z", 300, 2, True),
        ("2026-11-25T09:10:00Z", 50, 1, False),
    ]
    assert view["dropped_late"] == 4  # two batches, not three messages
    assert view["consumer_lag"] == 2
    assert view["batch_id"] == 1


def test_empty_topics_and_foreign_records():
    state = PipelineState()
    state.apply_result(b"k", b"not json")
    state.apply_metrics(b'{"batch_id": "x"}')
    view = state.view(last_windows=12)
    assert view["windows"] == [] and view["watermark"] is None and view["consumer_lag"] is None
    assert state.ignored == 2


def test_dead_letters_by_reason_and_tombstones():
    state = PipelineState()
    for reason in (b"value is not valid JSON", b"value is not valid JSON", b"missing field price"):
        state.apply_dead_letter([("rejection_reason", reason), ("source_topic", b"t")])
    state.apply_dead_letter([])
    state.apply_result(b"2026-11-25T09:00:00Z", result("2026-11-25T09:00:00Z", "2026-11-25T09:10:00Z", 100, 1, 0))
    state.apply_result(b"2026-11-25T09:00:00Z", None)
    view = state.view(last_windows=12)
    assert view["dead_letters"] == {"value is not valid JSON": 2, "missing field price": 1, "(no reason header)": 1}
    assert view["windows"] == []


def coordinates(topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [("source_topic", topic.encode()), ("source_partition", str(partition).encode()), ("source_offset", str(offset).encode())]


def test_a_dead_letter_written_again_counts_once():
    state = PipelineState()
    batch = [(("t", 0, 5), b"value is not valid JSON"), (("t", 1, 5), b"value is not valid JSON"), (("t", 0, 6), b"missing field price")]
    for _ in range(2):  # a batch run again after a crash writes its dead letters again
        for (topic, partition, offset), reason in batch:
            state.apply_dead_letter(
                [("rejection_reason", reason), *coordinates(topic, partition, offset)], f"{topic}-{partition}-{offset}".encode()
            )
    # without the coordinate headers, the key `topic-partition-offset` (a topic name may hold dashes)
    state.apply_dead_letter([("rejection_reason", b"missing field price")], b"my-topic-2-7")
    state.apply_dead_letter([("rejection_reason", b"missing field price")], b"my-topic-2-7")
    # the same message again with another reason (the rules changed between the two runs): the later one counts
    state.apply_dead_letter([("rejection_reason", b"price is negative"), *coordinates("t", 0, 6)])
    assert state.view(last_windows=12)["dead_letters"] == {"value is not valid JSON": 2, "missing field price": 1, "price is negative": 1}
