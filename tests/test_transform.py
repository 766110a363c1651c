"""The transformation on static DataFrames: validation reasons and window totals by hand."""

import json
import os
import re
from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

from purchase_analytics.events import WIRE_PATTERN
from purchase_analytics.transform import (
    EVENT_SCHEMA,
    WIRE_EVENT_FUNCTION,
    _processing_time_s,
    aggregate_windows,
    parse_events,
    rejected_messages,
    valid_events,
)

from conftest import SETTINGS
from malformed import MALFORMED, VALID, VALID_UNUSUAL, WIRE_FORM

PRICE_MAX = int(SETTINGS["PRICE_MAX"])

T0 = 1_700_000_400  # 2023-11-14T22:20:00Z, a 10-minute boundary


def raw_frame(spark, values):
    return spark.createDataFrame([(v, "t", 0, i) for i, v in enumerate(values)], "value binary, topic string, partition int, offset long")


def event(price, ts, **kw):
    return json.dumps({**VALID, "price": price, "ts": ts, **kw}).encode()


def totals(spark, values, window="10 minutes", slide=None, group_by=()):
    """The job's aggregation (transform.aggregate_windows) over one static batch: (window
    start ISO, *group values) -> (total, orders); just the start when not grouped."""
    windows = aggregate_windows(valid_events(parse_events(raw_frame(spark, values), PRICE_MAX)), window, "10 minutes", slide, group_by)
    result = {}
    for w in windows.collect():
        key = (iso(w.window_start.timestamp()), *(w[g] for g in group_by))
        result[key if group_by else key[0]] = (w.total_purchase, w.orders)
    return result


def iso(epoch_s):
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat()


def test_every_malformed_payload_is_rejected_with_its_reason(spark):
    parsed = parse_events(raw_frame(spark, [v for v, _ in MALFORMED]), PRICE_MAX)
    rows = parsed.select("offset", "rejection_reason").orderBy("offset").collect()
    assert len(MALFORMED) >= 30
    for (payload, expected), row in zip(MALFORMED, rows, strict=True):
        assert row.rejection_reason is not None, f"accepted: {payload!r}"
        assert row.rejection_reason.startswith(expected), f"{payload!r}: {row.rejection_reason!r} does not start with {expected!r}"


def test_valid_events_pass_with_typed_columns(spark):
    values = [event(100, T0), event(PRICE_MAX, T0 + 1.25, extra_field="ignored"), event(1, 946_684_800)]
    parsed = parse_events(raw_frame(spark, values), PRICE_MAX)
    assert rejected_messages(parsed).count() == 0
    row = valid_events(parsed).where(F.col("price") == PRICE_MAX).first()
    assert row.event_time.timestamp() == pytest.approx(T0 + 1.25)
    assert (row.order_id, row.customer_id, row.furniture, row.color) == ("o-1", 5, "Desk", "red")


def test_unusual_but_valid_values_are_counted(spark):
    """Whitespace around the object, brackets and escapes inside strings, nested extra
    fields and a surrogate pair are all valid JSON objects: none is rejected."""
    parsed = parse_events(raw_frame(spark, VALID_UNUSUAL), 150_000)
    rejected = [(r.offset, r.rejection_reason) for r in rejected_messages(parsed).collect()]
    assert rejected == []
    assert valid_events(parsed).count() == len(VALID_UNUSUAL)


def test_fast_path_gives_the_same_rows_as_the_full_checks(spark):
    """Values in the wire form skip the VARIANT checks: every column of every row, valid or
    not, must be the same as when every value takes the full checks."""
    objects = [json.loads(v) for v, _ in MALFORMED if v and v.lstrip()[:1] == b"{" and _is_json(v)]
    values = [v for v, _ in MALFORMED] + VALID_UNUSUAL + WIRE_FORM + [json.dumps(o, separators=(",", ":")).encode() for o in objects]
    columns = [F.col(c).cast("string") for c in ("offset", "order_id", "customer_id", "furniture", "color", "price", "event_time")]

    def rows(fast_path):
        parsed = parse_events(raw_frame(spark, values), PRICE_MAX, fast_path=fast_path)
        return parsed.select(*columns, "rejection_reason").orderBy("offset").collect()

    fast, full = rows(True), rows(False)
    assert [v for v, a, b in zip(values, fast, full, strict=True) if a != b] == []
    on_fast_path = [v for v in values if v is not None and re.match(WIRE_PATTERN, v.decode("utf-8", "replace"))]
    assert len(on_fast_path) >= 20
    assert sum(r.rejection_reason is None for r in fast) >= 10


def test_wire_parser_recognises_what_the_wire_pattern_describes(spark):
    """The wire parser (jvm/) takes exactly the values events.WIRE_PATTERN, its
    specification, describes: the producer's compact form, nothing else."""
    values = [v for v, _ in MALFORMED] + VALID_UNUSUAL + WIRE_FORM
    recognised = raw_frame(spark, values).select("offset", F.call_function(WIRE_EVENT_FUNCTION, F.col("value")).isNotNull().alias("wire"))
    pattern = re.compile(WIRE_PATTERN.removeprefix("^").removesuffix("$"))
    expected = [v is not None and pattern.fullmatch(v.decode("utf-8", "replace")) is not None for v in values]
    assert [r.wire for r in recognised.orderBy("offset").collect()] == expected
    assert sum(expected) >= 12


def _is_json(value: bytes) -> bool:
    try:
        return isinstance(json.loads(value), dict)
    except (ValueError, RecursionError):
        return False


def test_future_bound_is_a_parameter(spark):
    now = int(datetime.now(timezone.utc).timestamp())
    parsed = parse_events(raw_frame(spark, [event(100, now + 3000), event(100, now + 30)]), 150_000, max_future_s=60)
    reasons = [r.rejection_reason for r in parsed.orderBy("offset").collect()]
    assert reasons == ["ts is more than 60 seconds ahead of the processing time", None]


def test_a_streaming_query_judges_the_future_rule_at_its_batch_time(spark, tmp_path):
    """current_timestamp() in a streaming query is the micro-batch's time from Spark's offset
    log (what makes the future rule judge a replayed batch alike): checked against Spark."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "0.json").write_text(json.dumps({"v": 1}) + "\n")
    seen = []
    query = (
        spark.readStream.schema("v int")
        .json(str(source))
        .select(F.unix_millis(F.current_timestamp()).alias("now_ms"), _processing_time_s().alias("now_s"))
        .writeStream.option("checkpointLocation", str(tmp_path / "ckpt"))
        .foreachBatch(lambda df, batch_id: seen.extend((batch_id, r.now_ms, r.now_s) for r in df.collect()))
        .trigger(availableNow=True)
        .start()
    )
    assert query.awaitTermination(120)
    logged = json.loads((tmp_path / "ckpt" / "offsets" / "0").read_text().splitlines()[1])["batchTimestampMs"]
    assert seen == [(0, logged, logged // 1000)]  # the job's own form of it too (transform._processing_time_s)


def test_window_boundaries_by_hand(spark):
    values = [
        event(100, T0 - 1),  # last second of the earlier window
        event(200, T0),  # exactly on the boundary: the later window
        event(300, T0 + 599),
        event(400, T0 + 600),  # next boundary
        event(500, T0 + 0.5),  # float ts
        event(600, T0 - 0.25),  # float ts just before the boundary
    ]
    assert totals(spark, values) == {
        iso(T0 - 600): (100 + 600, 2),
        iso(T0): (200 + 300 + 500, 3),
        iso(T0 + 600): (400, 1),
    }


def test_micro_batches_from_files_keep_and_drop_late_events_as_the_watermark_says(spark, tmp_path):
    """The transformation as a streaming query with no broker: one file of messages per
    micro-batch (Spark's file source, `maxFilesPerTrigger` 1). Each batch emits the windows
    it changed, with their totals so far; an event whose window ended at or before the
    watermark of the batch before is dropped, and a malformed message counts nowhere."""
    batches = [
        [event(100, T0 + 10), event(200, T0 + 20), event(300, T0 + 610)],  # the next batch's watermark: T0 + 10
        [event(400, T0 + 1900), event(50, T0 + 30), b"not json"],  # T0's window is open; the next watermark: T0 + 1300
        [event(80, T0 + 1250)],
        [event(70, T0 + 40), event(90, T0 + 1260)],  # T0's window ended before the watermark of the batch before: 70 is late
    ]
    source = tmp_path / "in"
    source.mkdir()
    for i, values in enumerate(batches):
        path = source / f"{i}.txt"
        path.write_bytes(b"\n".join(values) + b"\n")
        os.utime(path, (T0 + i, T0 + i))  # the file source takes files oldest first
    raw = spark.readStream.option("maxFilesPerTrigger", 1).text(str(source)).select(F.col("value").cast("binary").alias("value"))
    windows = aggregate_windows(valid_events(parse_events(raw, PRICE_MAX)), "10 minutes", "10 minutes")
    emitted = {}

    def collect(df, batch_id):
        rows = sorted((iso(r.window_start.timestamp()), r.total_purchase, r.orders) for r in df.collect())
        if rows:
            emitted[batch_id] = rows

    query = (
        windows.writeStream.outputMode("update")
        .option("checkpointLocation", str(tmp_path / "ckpt"))
        .foreachBatch(collect)
        .trigger(availableNow=True)
        .start()
    )
    assert query.awaitTermination(120)
    assert emitted == {
        0: [(iso(T0), 300, 2), (iso(T0 + 600), 300, 1)],
        1: [(iso(T0), 350, 3), (iso(T0 + 1800), 400, 1)],
        2: [(iso(T0 + 1200), 80, 1)],
        3: [(iso(T0 + 1200), 170, 2)],
    }


def test_invalid_rows_are_left_out_of_totals(spark):
    values = [event(1000, T0), *[v for v, _ in MALFORMED], event(2000, T0 + 10)]
    assert totals(spark, values) == {iso(T0): (3000, 2)}


def test_window_duration_is_a_parameter(spark):
    values = [event(100, T0), event(200, T0 + 60), event(300, T0 + 59)]
    assert totals(spark, values, window="1 minute") == {iso(T0): (400, 2), iso(T0 + 60): (200, 1)}


def test_windows_grouped_by_event_fields(spark):
    """--group-by: one row per window and group value, the totals split among them."""
    values = [event(100, T0, furniture="Sofa"), event(200, T0 + 5, furniture="Bed"), event(300, T0 + 9, furniture="Sofa")]
    values += [event(400, T0 + 600, furniture="Sofa", color="blue"), b"not json"]
    assert totals(spark, values, group_by=("furniture",)) == {
        (iso(T0), "Bed"): (200, 1),
        (iso(T0), "Sofa"): (400, 2),
        (iso(T0 + 600), "Sofa"): (400, 1),
    }
    assert totals(spark, values, group_by=("furniture", "color"))[(iso(T0 + 600), "Sofa", "blue")] == (400, 1)


def test_sliding_windows_count_an_event_in_every_window_it_falls_in(spark):
    """--slide: 10-minute windows every 5 minutes; an event is in two of them, one on a
    boundary is in the two windows that start at or before it."""
    values = [event(100, T0 + 60), event(200, T0 + 300), event(400, T0 + 599)]
    assert totals(spark, values, slide="5 minutes") == {
        iso(T0 - 300): (100, 1),
        iso(T0): (700, 3),
        iso(T0 + 300): (600, 2),
    }


def test_from_json_alone_silently_nulls_a_wrongly_typed_price(spark):
    """Why the job checks each value's JSON type (VARIANT) before from_json reads it: Spark's
    from_json with the event schema turns these prices into null without a word."""
    prices = ['"100"', "12.5", "true", "1e3"]
    values = [f'{{"order_id":"a","customer_id":1,"furniture":"Desk","color":"red","price":{p},"ts":{T0}}}' for p in prices]
    read = spark.createDataFrame([(v,) for v in values], "v string").select(F.from_json("v", EVENT_SCHEMA).alias("e"))
    assert [(r.e.order_id, r.e.price) for r in read.collect()] == [("a", None)] * 4
    reasons = [r.rejection_reason for r in parse_events(raw_frame(spark, [v.encode() for v in values]), PRICE_MAX).collect()]
    assert all(reason.startswith("price must be") for reason in reasons), reasons
