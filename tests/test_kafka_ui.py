"""The Kafka UI (kaskade served by textual-serve) against the real broker, in headless Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from browser import browser, screenshot, wait_for, wait_for_text  # noqa: F401
from kafka import KafkaProducer
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from purchase_analytics.runtime import kafka_ui
from purchase_analytics.runtime.processes import free_port, port_open
from purchase_analytics.runtime.web_service import WebService, group_members


@pytest.fixture
def ui(kafka, tmp_path):
    service = WebService("kafka-ui", free_port(), tmp_path / "web")
    service.start(kafka_ui.MODULE, kafka_ui.start_args(kafka, service.port))
    yield service
    service.stop()


def test_ui_lists_the_topics_and_shows_the_dead_letters_headers(ui, kafka, new_topic, browser, tmp_path):  # noqa: F811
    purchases, dead_letters = new_topic(3), new_topic(1)
    producer = KafkaProducer(bootstrap_servers=kafka)
    producer.send(purchases, b'{"order_id": "o-ui-1", "price": 1234}')
    producer.send(dead_letters, b"not json", key=b"k-1", headers=[("rejection_reason", b"value is not valid JSON")])
    producer.flush()
    producer.close()

    browser.get(f"{ui.url}/")
    admin = wait_for_text(browser, [purchases, dead_letters], 30, "both topics on the admin page")
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(ui.url) for url in loaded), loaded  # nothing from a CDN
    assert all(column in admin for column in ("Partitions", "Records", "Lag"))
    screenshot(browser, tmp_path, "kafka-ui.png")

    browser.get(f"{ui.url}/topic/{purchases}")
    wait_for_text(browser, ["o-ui-1"], 30, "the purchase message on the topic page")
    browser.get(f"{ui.url}/topic/{dead_letters}")
    wait_for_text(browser, ["not json", "k-1"], 30, "the dead letter on its topic page")
    browser.find_element("css selector", ".xterm-screen").click()  # focus the terminal, as a user would
    ActionChains(browser).send_keys(Keys.ENTER).perform()  # open the selected record
    wait_for_text(browser, ["Record Details"], 30, "the record details")
    ActionChains(browser).send_keys(Keys.RIGHT, Keys.RIGHT).perform()  # Key, Value, Headers tabs
    wait_for_text(browser, ["rejection_reason", "value is not valid JSON"], 30, "the dead letter's headers")
    screenshot(browser, tmp_path, "kafka-ui-dead-letter.png")


def test_stopping_the_ui_leaves_no_process_and_frees_the_port(ui, browser):  # noqa: F811
    browser.get(f"{ui.url}/")  # a tab: textual-serve starts a kaskade child in the group
    pgid = int(ui.pid_file.read_text())
    wait_for(lambda: len(group_members(pgid)) >= 2, 30, "the kaskade child of the server")
    browser.quit()

    assert ui.stop()  # what `make clean` runs for the UI
    assert group_members(pgid) == []
    assert not port_open(ui.port)
    assert not ui.pid_file.exists()


def test_ui_on_a_taken_port_fails_in_one_line(kafka, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        service = WebService("kafka-ui", taken.getsockname()[1], tmp_path)
        with pytest.raises(RuntimeError, match=r"^port \d+ is taken by another process"):
            service.start(kafka_ui.MODULE, kafka_ui.start_args(kafka, service.port))


def test_ui_without_a_broker_says_so_in_one_line_and_starts_nothing(tmp_path):
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=f"localhost:{free_port()}", KAFKA_UI_PORT=str(free_port()))
    proc = subprocess.run(
        [sys.executable, "-m", "purchase_analytics.runtime.local", "kafka-ui-start"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"warning: Kafka UI not started: no broker answers at {env['KAFKA_BOOTSTRAP_SERVERS']} (run `make kafka`)"
    ]
    assert not port_open(int(env["KAFKA_UI_PORT"]))
