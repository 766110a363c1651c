"""The benchmark's code runs end to end on tiny inputs (`python -m bench --smoke`) and
writes the results JSON the README table comes from. No timing is asserted: the figures
depend on the machine; what must hold is that every phase measured what it says."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.spark
def test_smoke_run_writes_every_figure(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results-dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [path] = tmp_path.glob("bench-smoke-*.json")
    results = json.loads(path.read_text())
    settings = results["settings"]

    assert results["machine"]["cpus"] >= 1
    ceiling = results["ceiling"]
    assert ceiling["producer"]["events"] == settings["spark_events"] == ceiling["consumer"]["events"]
    assert 100 < ceiling["record_bytes"] < 200  # the perf tools sent our real events

    assert "kafka-python" in results["producer"]
    for backend, run in results["producer"].items():
        assert run["sent"] == run["acked"] == settings["producer_events"], backend  # every event acknowledged
        assert run["failed"] == run["pending"] == 0
        assert run["events_per_s"] > 0 and run["peak_rss_mb"] > 0

    spark = results["spark"]
    assert spark["events"] == settings["spark_events"]  # Spark read the whole pre-filled topic
    assert len(spark["batches"]) >= settings["spark_events"] // settings["max_offsets_per_trigger"]
    assert spark["rows_per_s"] > 0 and spark["peak_rss_mb"]["java"] > 0

    baseline = results["baseline"]
    assert baseline["events"] == settings["spark_events"] and baseline["rejected"] == 0
    assert baseline["same_totals_as_spark"] is True  # the plain consumer computes the same windows

    latency = results["stream"]["latency"]
    assert latency["events"] == settings["latency_rate"] * settings["latency_s"]  # one latency per event sent
    assert latency["without_output"] == 0
    assert 0 < latency["p50_s"] <= latency["p95_s"] <= latency["max_s"]
    steps = results["stream"]["steps"]
    assert steps and all({"target_rate", "input_rate", "final_lag", "kept_up"} <= set(s) for s in steps)

    memory = results["memory"]
    assert memory["batches"] > 0 and memory["state_rows_series"]
    assert all(rows >= 0 for _, rows in memory["state_rows_series"])
    assert memory["rss_mb_series"] and memory["peak_rss_mb"]["java"] > 0

    figures = [row[0] for row in results["table"]]
    assert any(f.startswith("producer (kafka-python)") for f in figures)
    assert any(f.startswith("latency") for f in figures) and any(f.startswith("baseline") for f in figures)
    assert "| figure | value | target | compared |" in proc.stdout  # the table printed for the README
