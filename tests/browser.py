"""Headless Chromium from Debian's packages, driven by Selenium through Debian's chromedriver
(the browsers that Selenium or Playwright would download cannot be fetched here).

Screenshots go to the test's tmp dir; with DOCS_SCREENSHOTS=1 they also replace the ones
committed under docs/ (the README shows those).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>]")


def missing_browser() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: run `make venv`"
    if not CHROMIUM or not CHROMEDRIVER:
        return "Debian's chromium and chromium-driver are not installed: apt-get install -y chromium chromium-driver"
    return None


def start_chromium():
    """Headless Chromium with the performance log on (to read the websocket frames a page receives)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.fixture
def browser():
    """A fresh headless Chromium per test (a page's websocket log starts empty)."""
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def websocket_text(driver) -> str:
    """What the page's websockets received since the last call, escape sequences removed.
    A textual-serve page draws into a canvas, so its text is read from the frames it got."""
    chunks = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.webSocketFrameReceived":
            response = message["params"]["response"]
            data = base64.b64decode(response["payloadData"]) if response["opcode"] == 2 else response["payloadData"].encode()
            chunks.append(data.decode("utf-8", "replace"))
    return ANSI.sub("", "".join(chunks))


def wait_for_text(driver, needles: list[str], timeout_s: float, what: str) -> str:
    """Collect the page's websocket text until every needle was seen; return it all."""
    seen: list[str] = []
    wait_for(lambda: seen.append(websocket_text(driver)) or all(n in "".join(seen) for n in needles), timeout_s, what, 0.3)
    return "".join(seen)


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


# The dashboard's page, read through the DOM and the chart's own data.
def page_windows(driver) -> dict[str, tuple[int, int]]:
    """The windows table as the page shows it: window_start (ISO) -> (total_purchase, orders)."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#windows-table tbody tr')).map(r => Array.from(r.cells).map(c => c.innerText))"
    )
    return {
        start.replace(" ", "T"): (int(total.replace(",", "")), int(orders.replace(",", ""))) for start, _end, total, orders, _state in rows
    }


def chart_windows(driver) -> dict[str, tuple[int, int]]:
    """The same from the chart's own data (plotly's traces on the graph element)."""
    bars, orders = driver.execute_script(
        "const g = document.querySelector('#windows-chart .js-plotly-plot'); return g ? g.data.map(t => [t.x, t.y]) : [[[], []], [[], []]]"
    )
    return {x: (int(total), int(n)) for x, total, n in zip(bars[0], bars[1], orders[1], strict=True)}


def page_groups(driver) -> tuple[dict[tuple[str, str], tuple[int, int]], dict[str, tuple[int, int]]]:
    """The per-window tables of a grouped page: (window_start, group) -> (revenue, orders),
    and window_start -> the total row's (revenue, orders)."""
    blocks = driver.execute_script(
        """const lastTwo = r => Array.from(r.cells).slice(-2).map(c => c.innerText);
        return Array.from(document.querySelectorAll('#window-groups .window-groups')).map(b => [
            b.dataset.windowStart,
            Array.from(b.querySelectorAll('tr.group-row')).map(r => [r.dataset.group, ...lastTwo(r)]),
            lastTwo(b.querySelector('tr.group-total'))])"""
    )
    groups, totals = {}, {}
    for start, rows, (total, orders) in blocks:
        for group, revenue, n in rows:
            groups[(start, group)] = (_int(revenue), _int(n))
        totals[start] = (_int(total), _int(orders))
    return groups, totals


def chart_groups(driver) -> tuple[dict[tuple[str, str], tuple[int, int]], dict[str, int]]:
    """The same from the stacked chart's own data: (x, trace name) -> (revenue, orders) of
    each bar, and x -> the total written above the window's bar."""
    traces = driver.execute_script(
        "const g = document.querySelector('#windows-chart .js-plotly-plot');"
        "return g ? g.data.map(t => [t.type, t.name, t.x, t.y, t.customdata || null]) : []"
    )
    bars, totals = {}, {}
    for kind, name, xs, ys, orders in traces:
        if kind == "bar":
            bars.update({(x, name): (int(y), int(n)) for x, y, n in zip(xs, ys, orders, strict=True) if y is not None})
        elif name == "window total":
            totals.update({x: int(y) for x, y in zip(xs, ys, strict=True)})
    return bars, totals


def _int(shown: str) -> int:
    return int(shown.replace(",", ""))


def text(driver, element_id: str) -> str:
    """The element's text, "" until Dash has rendered it."""
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : ''", element_id)


def screenshot(driver, tmp_path: Path, name: str, for_docs: bool = True) -> Path:
    """Save the page; with DOCS_SCREENSHOTS=1 (and `for_docs`) also as docs/NAME."""
    path = tmp_path / name
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, "the screenshot is blank"
    if for_docs and os.environ.get("DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / name)
    return path
