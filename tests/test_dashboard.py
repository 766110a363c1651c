"""The live dashboard in headless Chromium, fed by the real job through the real broker (the
job's own queries, in-process on the shared session)."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from browser import browser, chart_groups, chart_windows, page_groups, page_windows, screenshot, text, wait_for  # noqa: F401
from kafka import KafkaProducer
from readers import read_results_topic

from purchase_analytics.admin import create_topics
from purchase_analytics.events import FURNITURE
from purchase_analytics.records import results_topic_key, window_record
from purchase_analytics.reference import read_topic, window_totals
from purchase_analytics.runtime.processes import free_port
from purchase_analytics.runtime.web_service import WebService

from conftest import expected_totals, job_config, own_broker, produced_events, run_producer, run_queries
from malformed import MALFORMED

DASHBOARD = "purchase_analytics.dashboard"


def topic_options(purchases: str, dlq: str, results: str, metrics: str) -> list[str]:
    """The four topics, as the dashboard and the aggregator both take them."""
    return ["--topic", purchases, "--dlq-topic", dlq, "--results-topic", results, "--metrics-topic", metrics]


@pytest.fixture
def dashboard(tmp_path):
    """Factory: serve the dashboard for the given topics on a free port; stopped after the test."""
    services = []

    def start(bootstrap: str, purchases: str, dlq: str, results: str, metrics: str) -> WebService:
        service = WebService("dashboard", free_port(), tmp_path / f"web-{len(services)}")
        services.append(service)
        started_at = time.monotonic()
        service.start(
            DASHBOARD,
            [
                "--bootstrap-servers",
                bootstrap,
                "--port",
                str(service.port),
                *topic_options(purchases, dlq, results, metrics),
            ],
        )
        print(f"dashboard listening {time.monotonic() - started_at:.2f}s after start")
        return service

    yield start
    for service in services:
        service.stop()


def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"results-{suffix}", f"metrics-{suffix}"


def test_dashboard_shows_the_totals_of_the_real_job(spark, kafka, new_topic, dashboard, browser, tmp_path):  # noqa: F811
    purchases, dlq = new_topic(3), new_topic(1)
    results, metrics = names()
    service = dashboard(kafka, purchases, dlq, results, metrics)
    browser.get(f"{service.url}/")
    wait_for(
        lambda: text(browser, "windows-empty") == "no windows yet" and "connected" in text(browser, "broker-status"),
        30,
        "the empty dashboard",
    )

    run_producer("--bootstrap-servers", kafka, "--topic", purchases, "--rate", "0", "--count", "2000", "--seed", "21")
    expected = expected_totals(produced_events(kafka, purchases))
    bad = [value for value, _reason in MALFORMED if value is not None][:6]
    producer = KafkaProducer(bootstrap_servers=kafka)
    for value in bad:
        producer.send(purchases, value)
    producer.flush()
    producer.close()

    run_queries(
        spark,
        job_config(
            "--bootstrap-servers",
            kafka,
            *topic_options(purchases, dlq, results, metrics),
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--no-console",
        ),
    )

    latest = max((json.loads(r.value) for r in read_topic(kafka, metrics)), key=lambda m: m["batch_id"])
    # Each panel has its own callback: wait until all of them show the finished run.
    wait_for(
        lambda: (
            page_windows(browser) == expected
            and text(browser, "kpi-dead-letters") == str(len(bad))
            and text(browser, "kpi-lag") == "0"  # the job read everything up to the end offsets
            and text(browser, "kpi-batch") == str(latest["batch_id"])
        ),
        30,
        f"the page to show {expected}, {len(bad)} dead letters, lag 0 and batch {latest['batch_id']}",
    )
    assert chart_windows(browser) == expected
    assert text(browser, "kpi-watermark") == (latest["watermark"] or "-").replace("T", " ").replace(".000Z", "Z")
    reasons = browser.execute_script(
        "return Array.from(document.querySelectorAll('#dead-letters tbody tr')).map(r => r.cells[1].innerText)"
    )
    assert sum(int(n) for n in reasons) == len(bad)
    scripts = browser.execute_script("return Array.from(document.querySelectorAll('script[src], link[href]')).map(e => e.src || e.href)")
    assert scripts and all(s.startswith(service.url) for s in scripts), scripts  # no CDN: every asset from the wheel
    screenshot(browser, tmp_path, "dashboard.png")


def test_dashboard_follows_each_new_batch_without_a_reload(kafka, new_topic, dashboard, browser):  # noqa: F811
    purchases, dlq = new_topic(1), new_topic(1)
    results, metrics = names()
    create_topics(kafka, {results: 1, metrics: 1}, configs={results: {"cleanup.policy": "compact"}})  # as `make kafka` does
    service = dashboard(kafka, purchases, dlq, results, metrics)
    browser.get(f"{service.url}/")
    wait_for(lambda: "connected" in text(browser, "broker-status"), 30, "the dashboard to connect")
    producer = KafkaProducer(bootstrap_servers=kafka)
    delays = []
    for batch_id, total in enumerate((111_111, 222_222, 333_333, 444_444)):  # the open window, updated by four batches
        record = {
            "window_start": "2026-11-25T09:10:00Z",
            "window_end": "2026-11-25T09:20:00Z",
            "total_purchase": total,
            "orders": batch_id + 1,
            "batch_id": batch_id,
        }
        producer.send(results, json.dumps(record).encode(), key=record["window_start"].encode())
        producer.flush()
        sent = time.monotonic()
        shown = (total, batch_id + 1)
        wait_for(lambda shown=shown: page_windows(browser).get("2026-11-25T09:10:00Z") == shown, 10, f"total {total}", 0.02)
        delays.append(time.monotonic() - sent)
    producer.close()
    # The delays are reported, not asserted: timings belong to measurements, not to tests on a shared machine.
    print(f"update delays: first window on the empty page {delays[0]:.2f}s, then {', '.join(f'{d:.2f}s' for d in delays[1:])}")
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1  # no reload


T0 = int(datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc).timestamp())  # a window boundary
WINDOW_S, SLIDE_S = 600, 300  # 10-minute windows every 5 minutes: each event is in two windows


def sliding_totals(events: list[dict]) -> dict[tuple[str, str], tuple[int, int]]:
    """(window start ISO, furniture) -> (total, orders), every window holding each event."""
    return window_totals(events, WINDOW_S, ("furniture",), SLIDE_S)


def utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def test_dashboard_shows_each_window_split_by_group(kafka, new_topic, dashboard, browser, tmp_path):  # noqa: F811
    """The results of a job grouped by furniture with overlapping windows, written to a real
    results topic as the job writes them (records.window_record, records.results_topic_key) in
    two batches, the second written twice (a replay): the page's stacked bars and its table
    per window equal the latest total per window and group read back from the topic."""
    purchases, dlq = new_topic(1), new_topic(1)
    results, metrics = names()
    create_topics(kafka, {results: 1, metrics: 1}, configs={results: {"cleanup.policy": "compact"}})
    service = dashboard(kafka, purchases, dlq, results, metrics)
    rng = random.Random(7)
    events = sorted(
        ({"ts": T0 + rng.random() * 1500, "price": rng.randint(100, 150_000), "furniture": rng.choice(FURNITURE)} for _ in range(600)),
        key=lambda e: e["ts"],
    )
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    batches = [(0, events[:350]), (1, events), (1, events)]  # update mode: each batch's windows with their totals so far
    for batch_id, seen in batches:
        changed = sliding_totals(seen[350:] if batch_id else seen)
        for (start, furniture), (total, orders) in sliding_totals(seen).items():
            if (start, furniture) in changed:
                begins = datetime.fromisoformat(start.replace("Z", "+00:00"))
                row = {"window_start": begins, "window_end": begins + timedelta(seconds=WINDOW_S), "furniture": furniture}
                record = window_record({**row, "total_purchase": total, "orders": orders}, batch_id, ("furniture",))
                producer.send(results, json.dumps(record).encode(), key=results_topic_key(record).encode())
    watermark = utc(T0 + 900).strftime("%Y-%m-%dT%H:%M:%S.000Z")  # the windows ending by 09:15 are final
    producer.send(metrics, json.dumps({"batch_id": 1, "watermark": watermark, "input_rows": len(events), "end_offsets": {}}).encode())
    producer.flush()
    producer.close()

    expected = read_results_topic(kafka, results)  # (window start, furniture) -> (total, orders): the latest per key
    assert expected == sliding_totals(events)
    window_totals: dict[str, tuple[int, int]] = {}
    for (start, _group), (total, orders) in expected.items():
        before = window_totals.get(start, (0, 0))
        window_totals[start] = (before[0] + total, before[1] + orders)
    assert len(window_totals) == 6  # 08:55 to 09:20, every 5 minutes

    browser.set_window_size(1200, 1500)
    browser.get(f"{service.url}/")
    chart = (expected, {start: total for start, (total, _orders) in window_totals.items()})
    wait_for(
        lambda: page_groups(browser) == (expected, window_totals) and chart_groups(browser) == chart,  # each drawn on its own
        30,
        f"the tables and the chart to show {len(expected)} window groups",
    )
    assert text(browser, "kpi-final") == "3 of 6"
    states = browser.execute_script(
        "return Array.from(document.querySelectorAll('#window-groups .window-groups')).map(b => [b.dataset.windowStart, b.className])"
    )
    assert [(start, "window-final" in cls) for start, cls in states] == [
        (utc(start).strftime("%Y-%m-%dT%H:%M:%SZ"), start + WINDOW_S <= T0 + 900) for start in range(T0 + 1200, T0 - 600, -SLIDE_S)
    ]  # newest first
    assert "revenue per window by furniture" in browser.execute_script(
        "return document.querySelector('#windows-chart .gtitle').textContent"
    )
    assert text(browser, "windows-table-box").count("total") == 6
    print(screenshot(browser, tmp_path, "dashboard-groups-test.png", for_docs=False))


@pytest.mark.slow
def test_dashboard_says_when_the_broker_is_down_and_recovers(new_topic, dashboard, browser, tmp_path):  # noqa: F811
    broker = own_broker(tmp_path / "kafka")
    broker.start()
    try:
        service = dashboard(broker.bootstrap_servers, "purchases", "dlq", *names())
        browser.get(f"{service.url}/")
        wait_for(lambda: "connected" in text(browser, "broker-status"), 30, "the dashboard to connect")
        broker.stop()
        wait_for(lambda: text(browser, "broker-status").startswith("broker down since"), 15, "the page to say the broker is down")
        assert text(browser, "windows-empty") == "no windows yet"  # still serving
        broker.start()
        wait_for(lambda: "connected" in text(browser, "broker-status"), 30, "the page to say the broker is back")
    finally:
        broker.stop()


def test_make_kafka_creates_the_results_topic_compacted_and_the_metrics_topic(kafka):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource

    from purchase_analytics.runtime.local import pipeline_topics

    results, metrics = names()
    settings = {
        "KAFKA_TOPIC_NAME": f"p-{results}",
        "KAFKA_TOPIC_PARTITIONS": "3",
        "KAFKA_DLQ_TOPIC_NAME": f"d-{results}",
        "KAFKA_RESULTS_TOPIC_NAME": results,
        "KAFKA_METRICS_TOPIC_NAME": metrics,
    }
    topics, configs = pipeline_topics(settings)
    assert sorted(create_topics(kafka, topics, configs=configs)) == sorted([f"p-{results}", f"d-{results}", results, metrics])
    admin = AdminClient({"bootstrap.servers": kafka})

    def configs() -> dict | None:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, results), ConfigResource(ConfigResource.Type.TOPIC, metrics)]
        try:
            return {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
        except KafkaException:  # the broker learns of the topics from the controller a moment after their creation
            return None

    described = wait_for(configs, 30, "the broker to know the new topics")
    assert described[results]["cleanup.policy"].value == "compact"
    assert described[metrics]["cleanup.policy"].value == "delete"
