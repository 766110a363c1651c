"""The transformation on static DataFrames: validation reasons and window totals by hand."""

import json
import re
import time
from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

from purchase_analytics.config import interval_seconds
from purchase_analytics.events import WIRE_PATTERN
from purchase_analytics.job import fold_batch
from purchase_analytics.transform import WIRE_EVENT_FUNCTION, CheckedBatch, batch_rows, parse_events, rejected_messages, valid_events
from purchase_analytics.window_state import US, WindowState

from conftest import SETTINGS
from malformed import MALFORMED, VALID, VALID_UNUSUAL, WIRE_FORM

PRICE_MAX = int(SETTINGS["PRICE_MAX"])

T0 = 1_700_000_400  # 2023-11-14T22:20:00Z, a 10-minute boundary


def raw_frame(spark, values):
    return spark.createDataFrame([(v, "t", 0, i) for i, v in enumerate(values)], "value binary, topic string, partition int, offset long")


def event(price, ts, **kw):
    return json.dumps({**VALID, "price": price, "ts": ts, **kw}).encode()


def totals(spark, values, window="10 minutes"):
    """One batch through the job's own fold (job.fold_batch) into a new window state."""
    state = WindowState(round(interval_seconds(window) * US), 600 * US)
    outcome, _ = fold_batch(batch_rows(parse_events(raw_frame(spark, values), PRICE_MAX)), state, 0, append=False)
    assert outcome.messages == len(values)
    return {iso(w.window_start.timestamp()): (w.total_purchase, w.orders) for w in outcome.windows}


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


def test_the_batch_time_rule_checked_per_batch_gives_the_same_reasons_and_no_new_code(spark):
    """The streaming job checks the rule that depends on the batch's time once per batch
    (CheckedBatch), so the query's generated code never holds a time: in it, a new time in
    every micro-batch meant new classes to compile in every batch."""
    now = time.time()
    values = [v for v, _ in MALFORMED] + [event(100, T0), event(5, now + 200), event(7, now + 400), event(9, 1e300)]
    once = parse_events(raw_frame(spark, values), PRICE_MAX)
    expected = [r.rejection_reason for r in once.orderBy("offset").select("rejection_reason").collect()]
    assert expected[-4:] == [None, None] + ["ts is more than 300 seconds ahead of the processing time"] * 2
    compiled = spark._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    scanned = parse_events(raw_frame(spark, values), PRICE_MAX, batch_times_from=now - 60)

    check = CheckedBatch(300)

    def batch(batch_time_s):
        checked = check(scanned, batch_time_s)
        assert checked.count() == len(values)
        return checked.select("rejection_reason", "value").collect()  # a projection: the input's order (a valid row has no offset)

    rows = batch(now)
    assert [r.rejection_reason for r in rows] == expected
    assert [r.value for r in rows] == [v if r.rejection_reason else None for v, r in zip(values, rows, strict=True)]
    before = compiled.getCount()
    later = batch(now + 3600)  # another batch, an hour later: the event 400 s ahead is in time now
    assert [r.rejection_reason for r in later] == expected[:-2] + [None, expected[-1]]
    assert compiled.getCount() == before


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


def test_invalid_rows_are_left_out_of_totals(spark):
    values = [event(1000, T0), *[v for v, _ in MALFORMED], event(2000, T0 + 10)]
    assert totals(spark, values) == {iso(T0): (3000, 2)}


def test_window_duration_is_a_parameter(spark):
    values = [event(100, T0), event(200, T0 + 60), event(300, T0 + 59)]
    assert totals(spark, values, window="1 minute") == {iso(T0): (400, 2), iso(T0 + 60): (200, 1)}
