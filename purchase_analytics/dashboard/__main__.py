"""`make dashboard`: serve the live dashboard of the windows on 127.0.0.1:DASHBOARD_PORT.

It reads only Kafka (results, metrics and dead-letter topics, the purchase topic's end
offsets), so it shows the same whether the job runs in local[*], standalone or Docker.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping

from ..config import SettingsParser, parse_security
from ..kafka_client import KafkaSecurity
from ..options import positive_int


def parse_args(argv: list[str] | None = None, settings: Mapping[str, str] | None = None) -> tuple[argparse.Namespace, KafkaSecurity]:
    """The dashboard's options, their defaults from the settings as every entry point's."""
    p = SettingsParser(prog="python -m purchase_analytics.dashboard", description=__doc__, settings=settings)
    p.add_setting("--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", str, help="Kafka bootstrap servers")
    p.add_setting("--topic", "KAFKA_TOPIC_NAME", str, help="purchase topic (its end offsets give the consumer lag)")
    p.add_setting("--dlq-topic", "KAFKA_DLQ_TOPIC_NAME", str, help="dead-letter topic")
    p.add_setting("--results-topic", "KAFKA_RESULTS_TOPIC_NAME", str, help="latest total per window")
    p.add_setting("--metrics-topic", "KAFKA_METRICS_TOPIC_NAME", str, help="one JSON per micro-batch")
    p.add_setting("--host", "DASHBOARD_HOST", str, help="address to listen on")
    p.add_setting("--port", "DASHBOARD_PORT", positive_int, help="port to listen on")
    p.add_setting("--windows", "DASHBOARD_WINDOWS", positive_int, help="how many of the latest windows to show")
    return p.parse_args(argv), parse_security(p)


def main(argv: list[str] | None = None) -> int:
    a, security = parse_args(argv)

    from .app import create_app
    from .feed import FeedTopics, KafkaFeed

    feed = KafkaFeed(a.bootstrap_servers, FeedTopics(a.topic, a.dlq_topic or None, a.results_topic, a.metrics_topic), security).start()
    app = create_app(feed, a.windows)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    print(f"dashboard on http://{a.host}:{a.port}/ reading Kafka at {a.bootstrap_servers}", flush=True)
    try:
        app.run(host=a.host, port=a.port, debug=False)
    except OSError as exc:
        print(f"error: dashboard cannot listen on {a.host}:{a.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        feed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
