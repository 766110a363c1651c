"""The benchmark's code runs end to end on tiny inputs (`python -m bench --smoke`) and
writes the results JSON the docs' table comes from. No timing is asserted: the figures
depend on the machine; what must hold is that every figure was measured, and that every
system with the job's rules computed the plain consumer's window totals."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, TOOL_ENV


def not_installed(result: dict) -> bool:
    return str(result.get("error", "")).startswith("not installed")


def systems(results: dict) -> dict[str, dict]:
    """Every system that read the traffic topic: the plain consumer, the Spark runs, the peers."""
    return {"plain consumer": results["baseline"], **{f"spark {k}": v for k, v in results["spark"].items()}, **results["peers"]}


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.spark
def test_smoke_run_measures_every_figure(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        env=TOOL_ENV,  # every JVM of the run (broker, perf tools, Spark, Flink) with the tests' options
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [path] = tmp_path.glob("bench-smoke-*.json")
    results = json.loads(path.read_text())
    settings = results["settings"]

    assert results["machine"]["cpus"] >= 1 and len(results["machine"]["loadavg_at_end"]) == 3
    assert results["versions"]["spark"] and results["versions"]["kafka"]
    ceiling = results["ceiling"]
    assert ceiling["producer"]["events"] == settings["spark_events"] == ceiling["consumer"]["events"]
    assert 100 < ceiling["record_bytes"] < 200  # the perf tools sent our real events

    assert set(results["producer"]) == {"kafka-python", "confluent"}
    for backend, run in results["producer"].items():
        assert run["sent"] == run["acked"] == settings["producer_events"], backend  # every event acknowledged
        assert run["failed"] == run["pending"] == 0

    traffic = results["traffic"]
    assert traffic["events"] == settings["spark_events"]
    assert traffic["invalid"] > 0 and traffic["late"] > 0 and traffic["on_time"] == traffic["events"] - traffic["invalid"] - traffic["late"]
    assert all(traffic["invalid_by_kind"].values())  # every kind of invalid message was sent

    plain = results["baseline"]
    assert plain["messages"] == traffic["events"]
    assert plain["rejected"] == traffic["invalid"] and plain["dropped_late"] == traffic["late"]
    assert sum(orders for _, orders in plain["windows"].values()) == traffic["on_time"]
    assert plain["windows_compared"] >= 2  # the smoke traffic spans a few windows (the full run: 145)

    measured = systems(results)
    assert len(measured) >= 4  # the plain consumer, the job with and without dead letters, from_json alone
    for label, result in measured.items():
        if not_installed(result):
            continue  # a peer whose program is not installed here
        assert "error" not in result, f"{label}: {result['error'][-2000:]}"
        assert result["messages"] == traffic["events"], label
        assert 0 < result["startup_s"] < result["wall_s"], label
        assert result["cpu_s"] > 0 and result["cpu_s_per_million"] > 0, label
        assert result["events_per_s_net"] > result["events_per_s_wall"] > 0, label
        if result is plain or result["rejected"] is None:  # the reference, and from_json (no rules)
            continue
        assert result["windows_compared"] == plain["windows_compared"], label
        if "flink" in label.lower():  # its JSON format coerces some invalid values (docs/performance.md): a superset, no more
            assert result["windows_with_fewer_orders"] == 0, label
            assert 0 <= result["orders_more_than_reference"] <= traffic["invalid"], label
            continue
        assert result["same_totals"] is True, f"{label}: {result['differences']}"
        assert (result["rejected"], result["dropped_late"]) == (traffic["invalid"], traffic["late"]), label
    assert results["spark"]["default"]["dead_letters"] == traffic["invalid"]  # the dead-letter query wrote every invalid message
    assert results["spark"]["default"]["events_per_s_busy"] > 0

    latency = results["stream"]["latency"]
    assert latency["backend"] == "confluent"
    assert latency["events"] == settings["latency_rate"] * settings["latency_s"]  # one latency per event sent
    assert latency["without_output"] == latency["left_the_offset_log"] == 0
    assert 0 < latency["p50_s"] <= latency["p95_s"] <= latency["max_s"]
    steps = results["stream"]["steps"]
    assert steps and all({"target_rate", "input_rate", "final_lag", "kept_up"} <= set(s) for s in steps)

    memory = results["memory"]
    assert memory["batches"] > 0 and memory["state_rows_series"]
    assert memory["rss_mb_series"] and memory["peak_rss_mb"]["java"] > 0 and memory["peak_rss_mb"]["python"] > 0

    for figure, value, _ratio, target, met in results["table"]:
        if value.startswith("not installed"):
            continue
        assert value and not value.startswith(("failed", "not measured")), figure
        if target:
            assert met.startswith(("ok", "MISSED", "bounded", "GROWING", "too short")), f"{figure}: {met}"
    figures = " ".join(row[0] for row in results["table"])
    for expected in ("Spark default job", "from_json alone", "steady rate", "p95 send-to-sink latency", "driver peak RSS, state run"):
        assert expected in figures
    assert "| figure | value | ratio | target | met |" in proc.stdout  # the table printed for the docs
