"""The results table: one row per figure, its target and its ratio to a baseline measured
in the same run (absolute numbers move with the machine's load; ratios much less)."""

from __future__ import annotations

TARGETS = {"producer kafka-python": 50_000, "producer confluent": 150_000, "spark rows/s": 150_000, "latency p95 s": 2.0}


def rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, comparison)"""
    out = []
    ceil = results.get("ceiling", {})
    perf_p = ceil.get("producer", {}).get("events_per_s")
    perf_c = ceil.get("consumer", {}).get("events_per_s")
    if ceil:
        out.append(("ceiling: kafka-producer-perf-test (acks=all)", f"{perf_p:,.0f} ev/s", "", f"{ceil['record_bytes']} B records"))
        out.append(("ceiling: kafka-consumer-perf-test", f"{perf_c:,.0f} ev/s", "", ""))
    for backend, r in results.get("producer", {}).items():
        target = TARGETS.get(f"producer {backend}")
        out.append(
            (
                f"producer ({backend}), {r['sent']:,} events",
                f"{r['events_per_s']:,.0f} ev/s",
                _ge(target, r["events_per_s"]),
                _ratio(r["events_per_s"], perf_p, "of perf producer"),
            )
        )
    s = results.get("spark")
    if s:
        out.append(
            (
                f"Spark --available-now, {s['events']:,} events",
                f"{s['rows_per_s']:,.0f} rows/s",
                _ge(TARGETS["spark rows/s"], s["rows_per_s"]),
                _ratio(s["rows_per_s"], perf_c, "of perf consumer"),
            )
        )
        if s.get("rows_per_s_after_first_batch"):
            out.append(("  same, after the first (warm-up) batch", f"{s['rows_per_s_after_first_batch']:,.0f} rows/s", "", ""))
    st = results.get("stream")
    if st:
        lat = st["latency"]
        out.append(
            (
                f"latency send -> sink at {lat['rate']:,} ev/s, 1 s trigger",
                f"p50 {lat['p50_s']} s, p95 {lat['p95_s']} s",
                _le(TARGETS["latency p95 s"], lat["p95_s"]),
                f"{lat['events']:,} events, max {lat['max_s']} s",
            )
        )
        failing = st["first_failing_rate"]
        out.append(
            (
                "Spark highest steady rate, 1 s trigger",
                f"{st['max_steady_rate']:,} ev/s",
                "",
                f"lag grew at {failing:,} ev/s" if failing else "no step left a growing lag",
            )
        )
    b = results.get("baseline")
    if b:
        spark_rate = (s or {}).get("rows_per_s")
        same = {True: "same totals", False: "TOTALS DIFFER", None: ""}[b.get("same_totals_as_spark")]
        out.append(
            (
                "baseline: one kafka-python consumer",
                f"{b['events_per_s']:,.0f} ev/s",
                "",
                ", ".join(x for x in (_ratio(b["events_per_s"], spark_rate, "of Spark"), same) if x),
            )
        )
    for backend, r in results.get("producer", {}).items():
        out.append((f"peak RSS, producer ({backend})", f"{r['peak_rss_mb']} MB", "", ""))
    if s:
        out.append(("peak RSS, Spark driver (available-now)", _rss(s["peak_rss_mb"]), "", ""))
    m = results.get("memory")
    if m:
        verdict = {True: "bounded", False: "GROWING", None: "too short to tell"}[m["bounded"]]
        out.append(
            (
                f"state rows over {m['duration_s']:.0f} s at {m['rate']:,} ev/s ({m['window']} windows)",
                f"max {m['max_first_half']} / {m['max_second_half']}",
                "",
                f"{verdict} (first half / second half)",
            )
        )
        out.append(("peak RSS, Spark driver (memory run)", _rss(m["peak_rss_mb"]), "", ""))
    return out


def _rss(by_name: dict) -> str:
    return ", ".join(f"{name} {value} MB" for name, value in sorted(by_name.items()))


def _ratio(value, base, what: str) -> str:
    return f"{value / base:.2f}x {what}" if value and base else ""


def _ge(target, value) -> str:
    return "" if target is None else f">= {target:,} {'ok' if value >= target else 'MISSED'}"


def _le(target, value) -> str:
    return "" if value is None else f"<= {target} s {'ok' if value <= target else 'MISSED'}"


def markdown(table: list[tuple[str, str, str, str]]) -> str:
    lines = ["| figure | value | target | compared |", "| --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(r)} |" for r in table]
    return "\n".join(lines)
