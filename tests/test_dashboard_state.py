"""The dashboard's fold of the Kafka records, without a broker."""

import json

from purchase_analytics.dashboard.app import windows_figure
from purchase_analytics.dashboard.state import PipelineState
from purchase_analytics.records import results_topic_key


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


def grouped(start: str, end: str, groups: dict, total: int, orders: int, batch_id: int) -> tuple[bytes, bytes]:
    """A results record of a grouped job (records.window_record) and its key (records.results_topic_key)."""
    record = {"window_start": start, "window_end": end, **groups, "total_purchase": total, "orders": orders, "batch_id": batch_id}
    return results_topic_key(record).encode(), json.dumps(record).encode()


W1, W1_END, W2, W2_END = "2026-11-25T09:00:00Z", "2026-11-25T09:10:00Z", "2026-11-25T09:10:00Z", "2026-11-25T09:20:00Z"


def test_grouped_totals_are_kept_per_window_and_group():
    state = PipelineState()
    records = [
        grouped(W1, W1_END, {"furniture": "Sofa"}, 500, 2, 0),
        grouped(W1, W1_END, {"furniture": "Chair"}, 120, 1, 0),
        grouped(W2, W2_END, {"furniture": "Sofa"}, 70, 1, 1),
        grouped(W1, W1_END, {"furniture": "Sofa"}, 800, 3, 1),  # the window's Sofa total grew in batch 1
        grouped(W2, W2_END, {"furniture": "Sofa"}, 70, 1, 1),  # batch 1 replayed after a restart: the same key and value
    ]
    for key, value in records:
        state.apply_result(key, value)
    state.apply_metrics(metrics(1, "2026-11-25T09:12:00.000Z", {}))
    assert sorted(state.windows) == [f"{W1}|Chair", f"{W1}|Sofa", f"{W2}|Sofa"]
    assert state.group_by == ("furniture",)

    view = state.view(last_windows=12)
    assert view["group_by"] == ["furniture"]
    assert [g["label"] for g in view["groups"]] == ["Chair", "Sofa"]  # by value
    assert [(w["window_start"], w["total_purchase"], w["orders"], w["final"], w["batch_id"]) for w in view["windows"]] == [
        (W1, 920, 4, True, 1),
        (W2, 70, 1, False, 1),
    ]
    assert [[(g["label"], g["total_purchase"], g["orders"]) for g in w["groups"]] for w in view["windows"]] == [
        [("Chair", 120, 1), ("Sofa", 800, 3)],
        [("Sofa", 70, 1)],
    ]


def test_a_tombstone_deletes_one_group_of_a_window():
    state = PipelineState()
    for furniture, total in (("Sofa", 500), ("Chair", 120), ("Bed", 40)):
        state.apply_result(*grouped(W1, W1_END, {"furniture": furniture}, total, 1, 0))
    state.apply_result(f"{W1}|Chair".encode(), None)
    (window,) = state.view(last_windows=12)["windows"]
    assert (window["total_purchase"], window["orders"]) == (540, 2)
    assert [g["label"] for g in window["groups"]] == ["Bed", "Sofa"]
    for furniture in ("Sofa", "Bed"):
        state.apply_result(f"{W1}|{furniture}".encode(), None)
    assert state.view(last_windows=12)["windows"] == []


def test_two_group_fields_and_the_values_beyond_the_shown_ones():
    """Grouped by customer_id and color: the ten values with the most revenue are shown each
    on its own (ordered by value, numbers as numbers), the rest of a window as one "other"."""
    state = PipelineState()
    for customer in range(1, 13):  # customer c spent 100 * c
        state.apply_result(*grouped(W1, W1_END, {"customer_id": customer, "color": "navy"}, 100 * customer, 1, 0))
    state.apply_result(None, grouped(W2, W2_END, {"customer_id": 1, "color": "red"}, 9, 1, 0)[1])
    assert f"{W2}|1|red" in state.windows  # no Kafka key: the key the job would have written
    view = state.view(last_windows=12)
    assert view["group_by"] == ["customer_id", "color"]
    assert [g["label"] for g in view["groups"]] == [f"{c} / navy" for c in range(3, 13)]
    first, second = view["windows"]
    assert [(g["label"], g["total_purchase"]) for g in first["groups"]][-2:] == [("12 / navy", 1200), ("other (2)", 300)]
    assert (first["total_purchase"], first["orders"]) == (sum(100 * c for c in range(1, 13)), 12)
    assert [(g["label"], g["total_purchase"]) for g in second["groups"]] == [("other (1)", 9)]


def test_records_of_other_group_fields_than_the_latest_are_left_out():
    """An earlier run without groups on the same results topic: its windows are not mixed
    into the grouped ones (they would count twice)."""
    state = PipelineState()
    state.apply_result(W1.encode(), result(W1, W1_END, 620, 3, 0))
    assert state.view(last_windows=12)["group_by"] == []
    state.apply_result(*grouped(W1, W1_END, {"furniture": "Sofa"}, 500, 2, 0))
    view = state.view(last_windows=12)
    assert view["group_by"] == ["furniture"]
    assert [(w["window_start"], w["total_purchase"]) for w in view["windows"]] == [(W1, 500)]
    state.apply_result(b"k", json.dumps({**json.loads(result(W2, W2_END, 1, 1, 0)), "furniture": ["not", "a", "value"]}).encode())
    assert state.ignored == 1


def test_the_chart_title_names_the_windows_length_from_the_data():
    def window(start: str, end: str) -> dict:
        return {"window_start": start, "window_end": end, "total_purchase": 1, "orders": 1, "final": True}

    title = lambda windows: windows_figure(windows)["layout"]["title"]["text"]  # noqa: E731
    assert title([window("2026-01-02T10:00:00Z", "2026-01-02T10:10:00Z")]).startswith("total_purchase per 10-minute window (")
    assert title([window("2026-01-02T10:00:00.000Z", "2026-01-02T11:00:00.000Z")]).startswith("total_purchase per 1-hour window (")
    assert title([window("2026-01-02T10:00:00Z", "2026-01-02T10:01:30Z")]).startswith("total_purchase per 90-second window (")
    assert title([]).startswith("total_purchase per window (")
