"""The benchmark's traffic plan (bench/traffic.py `plan_traffic`): where the span of event
time ends, and what it refuses."""

import pytest

from bench.traffic import END_BEFORE_NOW_S, plan_traffic

WINDOW_S, WATERMARK_S = 600, 600


def plan(events: int, span_s: float, now_s: float, jitter_s: float = 120):
    return plan_traffic(events, span_s, jitter_s, 0.002, 0.001, 4_000, WINDOW_S, WATERMARK_S, 2, 5000, 7, now_s=now_s)


def test_a_long_span_ends_a_minute_before_now():
    now = 1_800_000_123
    p = plan(4_000_000, 24 * 3600, now)
    assert p.end_s == now - END_BEFORE_NOW_S and p.start_s == p.end_s - 24 * 3600


@pytest.mark.parametrize("offset_s", [0, 59, 61, 130, 299, 300, 301, 450, 599])
def test_a_span_shorter_than_two_windows_straddles_a_window_boundary(offset_s):
    """Wherever now falls in its window, the traffic covers two windows (the smoke run's totals
    compare at least two) and ends no later than a minute before now."""
    now = 1_800_000_000 + offset_s
    p = plan(12_000, 260, now)
    assert p.end_s <= now - END_BEFORE_NOW_S
    assert p.start_s // WINDOW_S != p.end_s // WINDOW_S
    assert p.end_s - p.span_s / 2 == pytest.approx(p.end_s // WINDOW_S * WINDOW_S, abs=1)


def test_late_events_need_room_after_the_first_two_batches():
    with pytest.raises(ValueError, match="no room for late events"):
        plan(8_000, 260, 1_800_000_000)
    with pytest.raises(ValueError, match="jitter"):
        plan(12_000, 260, 1_800_000_000, jitter_s=WATERMARK_S)
