#!/usr/bin/env python3
"""Check windowed totals written by the aggregator (--output-dir, JSON lines) against the
events in the topic, read back from the host through the published listener: per window,
or per window and group when the job grouped them (--group-by, as GROUP_BY).

Used by docker-without-registry/test_docker.sh; exits non-zero on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from purchase_analytics.defaults import DEFAULTS
from purchase_analytics.options import interval_seconds
from purchase_analytics.reference import read_topic, window_totals
from purchase_analytics.sinks import read_json_lines_totals


def duration_s(text: str) -> int:
    """'10 minutes' -> 600 (Spark interval strings as in WINDOW_DURATION)."""
    return int(interval_seconds(text))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--window", type=duration_s, default=DEFAULTS["WINDOW_DURATION"], help="window length, e.g. '10 minutes'")
    p.add_argument("--group-by", default="", help="the job's group fields, comma-separated (GROUP_BY), e.g. furniture")
    p.add_argument("--expect-events", type=int, help="how many events the producer sent")
    p.add_argument("--timeout-s", type=float, default=60)
    a = p.parse_args(argv)

    try:
        events = [json.loads(r.value) for r in read_topic(a.bootstrap_servers, a.topic, a.timeout_s)]
    except (RuntimeError, TimeoutError) as exc:
        print(f"FAIL: {exc}")
        return 1
    if a.expect_events is not None and len(events) != a.expect_events:
        print(f"FAIL: {len(events)} events in {a.topic}, expected {a.expect_events}")
        return 1
    group_by = [f.strip() for f in a.group_by.split(",") if f.strip()]
    expected = window_totals(events, a.window, group_by)
    actual = read_json_lines_totals(a.output_dir)
    if actual != expected:
        print(f"FAIL: windowed totals differ ({len(actual)} windows written, {len(expected)} expected)")
        for key in sorted(set(actual) | set(expected), key=str):
            if actual.get(key) != expected.get(key):
                print(f"  {key}: written {actual.get(key)}, expected (total, orders) {expected.get(key)}")
        return 1
    total = sum(t for t, _ in expected.values())
    what = f"windows by {','.join(group_by)}" if group_by else "windows"
    print(f"OK: {len(events)} events, {len(expected)} {what} of {a.window} s, total_purchase {total}: every one matches")
    for key in sorted(expected, key=str):
        print(f"  {key}  total_purchase={expected[key][0]}  orders={expected[key][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
