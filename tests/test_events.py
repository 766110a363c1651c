import json
import re
import uuid

from purchase_analytics.events import CUSTOMER_ID_MAX, FURNITURE, PRICE_MIN, WIRE_PATTERN
from purchase_analytics.producer import COLORS, EventGenerator

from conftest import SETTINGS

PRICE_MAX = int(SETTINGS["PRICE_MAX"])


def test_fields_types_and_ranges():
    gen = EventGenerator(seed=7, price_max=PRICE_MAX, clock=lambda: 1_700_000_000.9)
    for event in gen.events(2000):
        decoded = json.loads(event.to_json_bytes())
        assert set(decoded) == {"order_id", "customer_id", "furniture", "color", "price", "ts"}
        assert uuid.UUID(decoded["order_id"]).version == 4
        assert 1 <= decoded["customer_id"] <= CUSTOMER_ID_MAX
        assert decoded["furniture"] in FURNITURE
        assert decoded["color"] in COLORS
        assert PRICE_MIN <= decoded["price"] <= PRICE_MAX and isinstance(decoded["price"], int)
        assert decoded["ts"] == 1_700_000_000 and isinstance(decoded["ts"], int)  # integer seconds, never a float


def test_every_produced_event_takes_the_fast_path():
    """The job recognises the producer's wire form by WIRE_PATTERN (transform.parse_events)."""
    gen = EventGenerator(seed=3, price_max=PRICE_MAX)
    late = EventGenerator(seed=4, price_max=PRICE_MAX, late_fraction=1.0, max_lateness_s=600)
    for event in [*gen.events(2000), *late.events(500)]:
        assert re.match(WIRE_PATTERN, event.to_json_bytes().decode()), event


def test_seed_gives_the_same_sequence():
    clock = lambda: 1_700_000_000  # noqa: E731
    a = [e.to_json_bytes() for e in EventGenerator(seed=42, clock=clock).events(500)]
    b = [e.to_json_bytes() for e in EventGenerator(seed=42, clock=clock).events(500)]
    c = [e.to_json_bytes() for e in EventGenerator(seed=43, clock=clock).events(500)]
    assert a == b
    assert a != c


def test_distributions_cover_every_value():
    events = list(EventGenerator(seed=1, clock=lambda: 0).events(5000))
    assert {e.furniture for e in events} == set(FURNITURE)
    assert len({e.color for e in events}) == len(COLORS)
    assert min(e.customer_id for e in events) == 1 and max(e.customer_id for e in events) == CUSTOMER_ID_MAX


def test_late_events_go_back_in_time_within_the_bound():
    now = 1_700_000_000
    events = list(EventGenerator(seed=3, late_fraction=0.5, max_lateness_s=900, clock=lambda: now).events(2000))
    late = [e for e in events if e.ts < now]
    assert 800 < len(late) < 1200
    assert all(now - 900 <= e.ts < now for e in late)


def test_python_rules_agree_with_the_job_on_every_payload():
    """events.rejection_reason (the baseline's rules) rejects every malformed payload that
    json.loads reads, with the same reason for the field and value rules."""
    import json
    import time

    from purchase_analytics.events import DEFAULT_MAX_FUTURE_S, rejection_reason

    from malformed import MALFORMED, VALID_UNUSUAL

    now = time.time()
    for payload, expected in MALFORMED:
        try:
            value = json.loads(payload)
        except (TypeError, ValueError, RecursionError):
            continue  # not JSON for Python either (or nested beyond its recursion limit)
        if expected.startswith("value has content after") or "surrogate" in expected:
            continue  # json.loads rejected the first, and Python strings may hold lone surrogates
        reason = rejection_reason(value, 150_000, DEFAULT_MAX_FUTURE_S, now)
        assert reason is not None, payload
        if not expected.startswith(("value is not valid JSON", "customer_id must be an integer", "price must be an integer")):
            assert reason.startswith(expected), (payload, reason)
    for payload in VALID_UNUSUAL:
        assert rejection_reason(json.loads(payload), 150_000, DEFAULT_MAX_FUTURE_S, now) is None
