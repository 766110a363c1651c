"""End to end through the real command-line entry points: the producer CLI into a real
broker, the aggregator CLI with --available-now (a child with its own JVM), totals compared
with totals computed here; then a rerun on the checkpoint the CLI wrote. Unreachable brokers."""

import json
import sys

import pytest
from readers import read_results_db, read_results_topic

from purchase_analytics.runtime.processes import free_port
from purchase_analytics.sinks import read_json_lines_totals

from conftest import (
    AGGREGATOR,
    PRODUCER,
    Background,
    expected_totals,
    job_config,
    produced_events,
    read_topic,
    run_aggregator,
    run_producer,
    run_queries,
)

# The file's tests run on one xdist worker (conftest.GROUPS), the end-to-end test first: the
# unreachable-broker command lines wait out their connection timeouts (about 10 s each) in
# the background meanwhile.
pytestmark = pytest.mark.slow

CONSOLE_HEADER = "|       window_start|         window_end|total_purchase|orders|"


@pytest.fixture(scope="module", autouse=True)
def unreachable(tmp_path_factory) -> dict[str, Background]:
    """The producer and the aggregator command lines against a port where no broker listens,
    started together when the file's first test starts."""
    checkpoint = tmp_path_factory.mktemp("unreachable") / "c"
    return {
        "producer": Background([sys.executable, str(PRODUCER), "--bootstrap-servers", f"localhost:{free_port()}", "--count", "5"], 60),
        "aggregator": Background(
            [sys.executable, str(AGGREGATOR), "--master", "local[2]", "--bootstrap-servers", f"localhost:{free_port()}"]
            + ["--available-now", "--checkpoint", str(checkpoint)],
            120,
        ),
    }


@pytest.mark.spark
def test_windowed_totals_match_and_a_rerun_counts_nothing_twice(spark, kafka, new_topic, tmp_path):
    topic, results, metrics = new_topic(3), f"results-{tmp_path.name}", f"metrics-{tmp_path.name}"
    common = ["--bootstrap-servers", kafka, "--topic", topic]
    run_producer(*common, "--rate", "0", "--count", "3000", "--seed", "11", "--late-fraction", "0.3", "--max-lateness-s", "300")
    out_dir, db, progress = tmp_path / "out", tmp_path / "results.db", tmp_path / "progress.jsonl"
    job = [
        *("--results-topic", results, "--metrics-topic", metrics, "--progress-file", str(progress)),
        *common,
        "--available-now",
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--output-dir",
        str(out_dir),
        "--results-db",
        str(db),
        "--dlq-topic",
        "",
    ]
    first = run_aggregator(*job)
    assert "3000 messages, 3000 valid, 0 rejected" in first.stderr
    assert read_json_lines_totals(out_dir) == expected_totals(produced_events(kafka, topic))
    assert CONSOLE_HEADER in first.stdout and "Batch: 0" in first.stdout  # the table users know

    # The structured progress: the same records in the file and on the metrics topic.
    records = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [json.loads(r.value) for r in read_topic(kafka, metrics)] == records
    assert sum(r["messages"] for r in records) == sum(r["valid"] for r in records) == 3000
    assert sum(records[-1]["end_offsets"].values()) == 3000 and records[-1]["topic"] == topic

    run_producer(*common, "--rate", "0", "--count", "1000", "--seed", "12")
    # The rerun, in-process on the same checkpoint (a CLI rerun is in test_faults.py).
    second = run_queries(spark, job_config(*job, "--no-console"))
    assert second.messages == 1000  # only the new events were read
    expected = expected_totals(produced_events(kafka, topic))
    assert sum(orders for _, orders in expected.values()) == 4000
    assert read_json_lines_totals(out_dir) == expected
    assert read_results_db(db) == expected
    assert read_results_topic(kafka, results) == expected  # the latest value per window key


def test_producer_reports_an_unreachable_broker_in_one_line(unreachable):
    proc = unreachable["producer"].result()
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot reach a Kafka broker") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_aggregator_reports_an_unreachable_broker_in_one_line(unreachable):
    proc = unreachable["aggregator"].result()
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot reach a Kafka broker")
    assert "Traceback" not in proc.stderr
