"""End to end through the real entry points: the producer CLI into a real broker, the
aggregator CLI with --available-now, totals compared with totals computed here."""
import json
import time

from conftest import expected_totals, produced_events, read_topic, run_aggregator, run_producer
from purchase_analytics.sinks import read_json_lines_totals, read_results_db, read_results_topic


def test_windowed_totals_match_and_a_rerun_counts_nothing_twice(kafka, new_topic, tmp_path):
    topic, results, metrics = new_topic(3), f"results-{tmp_path.name}", f"metrics-{tmp_path.name}"
    common = ["--bootstrap-servers", kafka, "--topic", topic]
    run_producer(*common, "--rate", "0", "--count", "3000", "--seed", "11", "--late-fraction", "0.3", "--max-lateness-s", "300")
    out_dir, db, progress = tmp_path / "out", tmp_path / "results.db", tmp_path / "progress.jsonl"
    job = [*common, "--available-now", "--checkpoint", str(tmp_path / "ckpt"), "--output-dir", str(out_dir),
           "--results-db", str(db), "--dlq-topic", "", "--no-console", "--results-topic", results, "--metrics-topic", metrics,
           "--progress-file", str(progress)]
    first = run_aggregator(*job)
    assert "3000 messages, 3000 valid, 0 rejected" in first.stderr
    assert read_json_lines_totals(out_dir) == expected_totals(produced_events(kafka, topic))

    # The structured progress: the same records in the file and on the metrics topic.
    records = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [json.loads(r.value) for r in read_topic(kafka, metrics)] == records
    assert sum(r["messages"] for r in records) == sum(r["valid"] for r in records) == 3000
    assert sum(records[-1]["end_offsets"].values()) == 3000 and records[-1]["topic"] == topic

    run_producer(*common, "--rate", "0", "--count", "1000", "--seed", "12")
    second = run_aggregator(*job)
    assert "1000 messages" in second.stderr  # only the new events were read
    expected = expected_totals(produced_events(kafka, topic))
    assert sum(orders for _, orders in expected.values()) == 4000
    assert read_json_lines_totals(out_dir) == expected
    assert read_results_db(db) == expected
    assert read_results_topic(kafka, results) == expected  # the latest value per window key


def test_console_shows_the_original_table(kafka, new_topic, tmp_path):
    topic = new_topic(1)
    run_producer("--bootstrap-servers", kafka, "--topic", topic, "--rate", "0", "--count", "50", "--seed", "1")
    proc = run_aggregator("--bootstrap-servers", kafka, "--topic", topic, "--available-now", "--checkpoint", str(tmp_path / "c"))
    assert "|       window_start|         window_end|total_purchase|orders|" in proc.stdout
    assert "Batch: 0" in proc.stdout


def test_producer_reports_an_unreachable_broker_in_one_line():
    from purchase_analytics.runtime.processes import free_port

    started = time.monotonic()
    proc = run_producer("--bootstrap-servers", f"localhost:{free_port()}", "--count", "5", check=False, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot reach a Kafka broker") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 30


def test_aggregator_reports_an_unreachable_broker_in_one_line(tmp_path):
    from purchase_analytics.runtime.processes import free_port

    proc = run_aggregator("--bootstrap-servers", f"localhost:{free_port()}", "--available-now", "--checkpoint", str(tmp_path / "c"),
                          check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot reach a Kafka broker")
    assert "Traceback" not in proc.stderr
