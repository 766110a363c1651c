"""reference.py, the yardstick the Spark job is compared with: window totals in plain Python
by hand, and reading a whole topic from the session broker."""

from __future__ import annotations

import uuid

import pytest

from purchase_analytics.admin import create_topics
from purchase_analytics.reference import read_topic, window_totals

from conftest import send_raw

T0 = 1_700_000_400  # 2023-11-14T22:20:00Z, a 10-minute boundary


def test_window_totals_by_hand():
    events = [
        {"price": 100, "ts": T0 - 1},  # the window before
        {"price": 200, "ts": T0},  # on the boundary: the later window
        {"price": 300, "ts": T0 + 599.75},  # a float ts, still in it
        {"price": 400, "ts": T0 + 600},
        {"price": 50, "ts": T0 - 0.5},
    ]
    assert window_totals(events) == {
        "2023-11-14T22:10:00Z": (150, 2),
        "2023-11-14T22:20:00Z": (500, 2),
        "2023-11-14T22:30:00Z": (400, 1),
    }
    assert window_totals(events, window_s=3600) == {"2023-11-14T22:00:00Z": (1050, 5)}
    assert window_totals([]) == {}


def test_window_totals_by_group_and_sliding_by_hand():
    events = [
        {"price": 100, "ts": T0 + 10, "furniture": "Sofa"},
        {"price": 200, "ts": T0 + 300, "furniture": "Bed"},  # on a slide boundary
        {"price": 400, "ts": T0 + 599, "furniture": "Sofa"},
    ]
    assert window_totals(events, group_by=("furniture",)) == {
        ("2023-11-14T22:20:00Z", "Sofa"): (500, 2),
        ("2023-11-14T22:20:00Z", "Bed"): (200, 1),
    }
    assert window_totals(events, slide_s=300) == {  # 10-minute windows every 5 minutes: each event in two
        "2023-11-14T22:15:00Z": (100, 1),
        "2023-11-14T22:20:00Z": (700, 3),
        "2023-11-14T22:25:00Z": (600, 2),
    }


def test_read_topic_returns_every_record_of_every_partition_with_keys_and_headers(kafka):
    topic = f"ref-{uuid.uuid4().hex[:12]}"
    create_topics(kafka, {topic: 3})
    send_raw(kafka, topic, [(f"v{i}".encode(), i % 3) for i in range(30)])
    records = read_topic(kafka, topic)
    assert sorted(r.value for r in records) == sorted(f"v{i}".encode() for i in range(30))
    assert {r.partition for r in records} == {0, 1, 2}
    assert {r.value: r.key for r in records}[b"v7"] == b"k7"


def test_read_topic_of_an_empty_topic_and_of_a_missing_one(kafka):
    topic = f"ref-{uuid.uuid4().hex[:12]}"
    create_topics(kafka, {topic: 2})
    assert read_topic(kafka, topic) == []
    with pytest.raises(RuntimeError, match=rf"^topic {topic}-missing not found at {kafka}$"):
        read_topic(kafka, f"{topic}-missing", timeout_s=10)
