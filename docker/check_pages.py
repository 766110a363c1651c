#!/usr/bin/env python3
"""Check the compose services' pages in headless Chromium (the tests' tooling, tests/browser.py):
the kafka-ui service lists the purchase and dead-letter topics; the dashboard service shows
the windowed totals computed from the topic on the host.

Used by docker-without-registry/test_docker.sh, with tests/ on PYTHONPATH (for tests/browser.py);
exits non-zero, with one line, on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from browser import chart_windows, missing_browser, page_windows, start_chromium, text, wait_for, wait_for_text

from purchase_analytics.reference import read_topic, window_totals


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kafka-ui", help="URL of the kafka-ui service")
    p.add_argument("--dashboard", help="URL of the dashboard service")
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--dlq-topic", required=True)
    p.add_argument("--screenshot-dir", type=Path)
    a = p.parse_args()
    reason = missing_browser()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    driver = start_chromium()
    try:
        if a.kafka_ui:
            driver.get(a.kafka_ui)
            wait_for_text(driver, [a.topic, a.dlq_topic], 60, f"{a.topic} and {a.dlq_topic} on {a.kafka_ui}")
            print(f"Kafka UI at {a.kafka_ui} lists {a.topic} and {a.dlq_topic}")
            if a.screenshot_dir:
                driver.save_screenshot(str(a.screenshot_dir / "kafka-ui.png"))
        if a.dashboard:
            expected = window_totals(json.loads(r.value) for r in read_topic(a.bootstrap_servers, a.topic))
            driver.get(a.dashboard)
            wait_for(
                lambda: (
                    "connected" in text(driver, "broker-status") and page_windows(driver) == expected and chart_windows(driver) == expected
                ),
                60,
                f"the dashboard at {a.dashboard} to show {expected} in its table and chart",
            )
            print(f"dashboard at {a.dashboard} shows the topic's totals for {len(expected)} window(s)")
            if a.screenshot_dir:
                driver.save_screenshot(str(a.screenshot_dir / "dashboard.png"))
    except AssertionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
