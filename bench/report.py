"""The results tables. Figures: one row per figure with its value and its ratio to a figure
of the same run (absolute numbers move with the machine's load; ratios much less); the
figures with a target (TARGETS) say whether it was met, the others are information.
Systems: every system over the traffic topic side by side."""

from __future__ import annotations

NOT_MEASURED = "not measured"
SPARK_LABELS = {
    "default": "Spark default job (dead-letter query on)",
    "no_dlq": "Spark, dead-letter query off",
    "group_by": "Spark, --group-by furniture",
    "from_json": "from_json alone, no validation",
    "before": "Spark default job, before",  # and the revision
}


def systems(results: dict) -> dict[str, dict]:
    """label -> result of every system that read the traffic topic, the plain consumer first."""
    out = {}
    if results.get("baseline") is not None:
        out["plain consumer (kafka-python)"] = results["baseline"]
    spark = results.get("spark") or {}
    for key, label in SPARK_LABELS.items():
        if key in spark:
            out[label if key != "before" else f"{label} ({(results.get('settings') or {}).get('before')})"] = spark[key]
    for peer in (results.get("peers") or {}).values():
        if isinstance(peer, dict):  # not the phase's own error
            out[peer.get("label", "peer")] = peer
    return out


def rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    """(figure, value, ratio, target, met)"""
    failed = [name for name in PHASES_WITH_ONE_RESULT if name in results and not _ok(results[name])]
    out = [(f"{name} phase", _failure(results[name]), "", "", NOT_MEASURED) for name in failed]
    results = {k: v for k, v in results.items() if k not in failed}
    ceil = results.get("ceiling") or {}
    perf_p = ceil.get("producer", {}).get("events_per_s")
    perf_c = ceil.get("consumer", {}).get("events_per_s")
    if ceil:
        out.append((f"ceiling: kafka-producer-perf-test (acks=all), {ceil['record_bytes']} B records", _rate(perf_p, "ev/s"), "", "", ""))
        out.append(("ceiling: kafka-consumer-perf-test", _rate(perf_c, "ev/s"), "", "", ""))
    producers = results.get("producer") or {}
    for backend, r in producers.items():
        rate = r["events_per_s"]
        out.append((f"producer ({backend}), {r['sent']:,} events", _rate(rate, "ev/s"), _ratio(rate, perf_p, "perf producer"), "", ""))
    fill = results.get("traffic")
    if fill:
        plan = fill["plan"]
        out.append(
            (
                f"traffic fill (confluent-kafka): {fill['events']:,} events over {plan['span_s'] / 3600:g} h, "
                f"{fill['invalid']:,} invalid, {fill['late']:,} very late",
                f"{fill['seconds']} s, {fill['events_per_s']:,} ev/s",
                _ratio(fill["events_per_s"], perf_p, "perf producer"),
                "",
                "",
            )
        )
    out += _system_rows(results, perf_c)
    out += _stream_rows(results, producers)
    out += _memory_rows(results)
    return out


PHASES_WITH_ONE_RESULT = ("ceiling", "producer", "traffic", "spark", "peers", "stream", "memory")  # the plain consumer is a system
# The targets, each a ratio within one run (ev/s net of start-up) or the latency; every
# other figure is information. docs/performance.md describes them.
TARGETS = {
    "flink_sql": 1.0,  # the default job (dead letters on) >= 1.0x Flink SQL (no dead letters)
    "flink_sql_dlq": 1.0,  # ... and faster than Flink SQL with dead letters: > 1.0x
    "no_dlq": 0.7,  # the default job >= 0.7x itself without dead letters
    "quix": 5.0,  # the default job >= 5x Quix Streams
    "latency_p95_s": 0.5,  # p95 send-to-sink latency at 10,000 ev/s, dead letters on
}
PEER_TARGETS = {  # peer -> (target text, met)
    "flink_sql": (f">= {TARGETS['flink_sql']:.1f}x", lambda ratio: ratio >= TARGETS["flink_sql"]),
    "flink_sql_dlq": (f"> {TARGETS['flink_sql_dlq']:.1f}x", lambda ratio: ratio > TARGETS["flink_sql_dlq"]),
    "quix": (f">= {TARGETS['quix']:g}x", lambda ratio: ratio >= TARGETS["quix"]),
}


def _system_rows(results: dict, perf_c: float | None) -> list[tuple]:
    out = []
    plain = results.get("baseline")
    spark = results.get("spark") or {}
    default = spark.get("default")
    if plain is not None:
        out.append(
            (
                "plain consumer (kafka-python, json.loads, the job's rules)",
                _system_value(plain),
                _ratio(_net(plain), perf_c, "perf consumer"),
                "",
                "",
            )
        )
    if default is not None or "spark" in results:
        value = _system_value(default, spark=True)
        ratio = _times(_net(default), _net(plain))
        out.append(
            ("Spark default job (dead-letter query on), strict rules", value, f"{ratio} the plain consumer" if ratio else "", "", "")
        )
        no_dlq = spark.get("no_dlq")
        if no_dlq is not None:
            ratio = _net(default) / _net(no_dlq) if _net(default) and _net(no_dlq) else None
            out.append(
                (
                    "Spark, dead-letter query off",
                    _system_value(no_dlq, spark=True),
                    f"default job = {ratio:.2f}x this" if ratio else "",
                    f"default job >= {TARGETS['no_dlq']:.1f}x this",
                    _met(ratio >= TARGETS["no_dlq"]) if ratio else NOT_MEASURED,
                )
            )
        grouped = spark.get("group_by")
        if grouped is not None:
            ratio = _times(_net(grouped), _net(default))
            value = _system_value(grouped, spark=True)
            out.append(("Spark, --group-by furniture", value, f"{ratio} the default job" if ratio else "", "", ""))
        ref = spark.get("from_json")
        if ref is not None:
            share = _net(default) / _net(ref) if _net(default) and _net(ref) else None
            out.append(
                (
                    "default job against from_json alone (no validation)",
                    _system_value(ref, spark=True),
                    f"default job = {share:.0%} of it" if share else "",
                    "",
                    "",
                )
            )
        before = spark.get("before")
        if before is not None:
            ratio = _times(_net(default), _net(before))
            out.append(
                (
                    f"Spark default job at {before.get('revision', 'the --before revision')} (same topic, same run)",
                    _system_value(before, spark=True),
                    f"now = {ratio} before" if ratio else "",
                    "",
                    "",
                )
            )
    for name, peer in (results.get("peers") or {}).items():
        if not isinstance(peer, dict):
            continue
        label = peer.get("label", name)
        ratio = _net(default) / _net(peer) if _net(default) and _net(peer) else None
        text = f"Spark = {ratio:.2f}x it" if ratio else ""
        if "flink" in name.lower():
            figure = f"same, against {label} (both from submit / first batch to exit)"
            # the other way to compare: both from the process's start, JVM start-up included (information)
            wall = _wall(default) / _wall(peer) if ratio and _wall(default) and _wall(peer) else None
            text += f"; {wall:.2f}x from process start to exit" if wall else ""
        else:
            figure = f"same, against {label} (both from first record / first batch to exit)"
        target, holds = PEER_TARGETS.get(name, ("", None))
        met = "" if holds is None else NOT_MEASURED if ratio is None else _met(holds(ratio))
        out.append((figure, _system_value(peer), text, f"Spark {target} it" if target else "", met))
    compared = {label: r for label, r in systems(results).items() if r is not plain and "same_totals" in r}
    if compared:
        same = [label for label, r in compared.items() if r["same_totals"]]
        differ = [label for label, r in compared.items() if not r["same_totals"]]
        strict = [label for label in compared if not _lax(label)]
        strict_same = all(compared[label]["same_totals"] for label in strict)
        out.append(
            (
                f"window totals equal the plain consumer's ({plain.get('windows_compared', 0)} windows)",
                f"{len(same)} of {len(compared)} systems"
                + (f"; differ: {', '.join(differ)}" if differ else "")
                # from_json alone and Flink SQL's JSON format accept more than the job's rules
                + ("; every system with the job's rules: " + ("yes" if strict_same else "NO")),
                "",
                "",
                "",
            )
        )
    return out


def _stream_rows(results: dict, producers: dict) -> list[tuple]:
    st = results.get("stream")
    if not st:
        return []
    lat = st["latency"]
    alone = (producers.get(lat.get("backend")) or {}).get("events_per_s")
    failing = st["first_failing_rate"]
    warm = f", after {st['warmup_s']:g} s warm-up" if st.get("warmup_s") else ""
    return [
        (
            f"steady rate at a 1 s trigger (producer: {lat.get('backend')}{warm})",
            f"{st['max_steady_rate']:,} ev/s" + (f" (lag grew at {failing:,})" if failing else " (no step left a growing lag)"),
            _ratio(st["max_steady_rate"], alone, f"the {lat.get('backend')} producer alone"),
            "",
            "",
        ),
        (
            f"p95 send-to-sink latency at {lat['rate']:,} ev/s, trigger {lat.get('trigger', '1 second')}"
            f", dead letters {'on' if lat.get('dead_letters') else 'off'}{warm}",
            f"p50 {lat['p50_s']} s, p95 {lat['p95_s']} s ({lat['events']:,} events, max {lat['max_s']} s"
            + (f"; {lat['left_the_offset_log']:,} read by batches no longer in the offset log" if lat.get("left_the_offset_log") else "")
            + ")",
            "",
            f"<= {TARGETS['latency_p95_s']} s",
            _met(lat["p95_s"] is not None and lat["p95_s"] <= TARGETS["latency_p95_s"]),
        ),
    ]


def _memory_rows(results: dict) -> list[tuple]:
    out = []
    driver_memory = (results.get("versions") or {}).get("spark.driver.memory", "?")
    m = results.get("memory")
    if m:
        peak = m["peak_rss_mb"]
        total = sum(peak.values())
        cap = _size_mb(driver_memory)
        out.append(
            (
                f"driver peak RSS, state run ({m['duration_s']:.0f} s at {m['rate']:,} ev/s, spark.driver.memory {driver_memory})",
                _rss(peak),
                f"{total / cap:.2f}x spark.driver.memory" if cap else "",
                "",
                "",
            )
        )
        verdict = {True: "bounded", False: "GROWING", None: "too short to tell"}[m["bounded"]]
        out.append(
            (
                f"state rows, state run ({m['window']} windows and watermark)",
                f"max {m['max_first_half']} / {m['max_second_half']} (first half / second half): {verdict}",
                "",
                "",
                "",
            )
        )
    default = (results.get("spark") or {}).get("default")
    if _ok(default):
        out.append(("driver peak RSS, Spark default job (available-now)", _rss(default["peak_rss_mb"]), "", "", ""))
    return out


def system_rows(results: dict) -> list[tuple]:
    """(system, events, wall s, start-up s, ev/s wall, ev/s net, CPU s per M events, CPU vs plain, peak RSS, same totals)"""
    plain_cpu = (results.get("baseline") or {}).get("cpu_s_per_million")
    out = []
    for label, r in systems(results).items():
        if not _ok(r):
            out.append((label, _failure(r), "", "", "", "", "", "", "", ""))
            continue
        cpu = r.get("cpu_s_per_million")
        same = r.get("same_totals")
        out.append(
            (
                label,
                f"{r['messages']:,}",
                f"{r['wall_s']}",
                "" if r.get("startup_s") is None else f"{r['startup_s']}",
                _num(r.get("events_per_s_wall")),
                _num(r.get("events_per_s_net")) + (f" ({_num(r['events_per_s_busy'])} busy)" if r.get("events_per_s_busy") else ""),
                f"{cpu}" if cpu is not None else "",
                _times(cpu, plain_cpu) or "",
                _rss(r.get("peak_rss_mb") or {}),
                "reference" if "same_totals" not in r and r is results.get("baseline") else _same(label, r, same),
            )
        )
    return out


SYSTEM_HEADER = (
    "system",
    "events",
    "wall s",
    "start-up s",
    "ev/s wall",
    "ev/s net of start-up",
    "CPU s / M events",
    "CPU vs plain",
    "peak RSS",
    "same totals",
)


def markdown(results: dict) -> str:
    """Both tables, as printed and as pasted into docs/performance.md."""
    m = results.get("machine", {})
    head = (
        f"{m.get('cpus')} CPUs ({m.get('cpu')}), {m.get('memory_gb')} GB; load average {_load(m.get('loadavg_at_start'))} at the start, "
        f"{_load(m.get('loadavg_at_end'))} at the end; " + ", ".join(f"{k} {v}" for k, v in (results.get("versions") or {}).items())
    )
    figures = _table(("figure", "value", "ratio", "target", "met"), results.get("table") or rows(results))
    system_table = _table(SYSTEM_HEADER, results.get("systems_table") or system_rows(results))
    return f"{head}\n\n{figures}\n\n{system_table}"


def _table(header: tuple, body: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in body])


def _ok(r: dict | None) -> bool:
    return bool(r) and "error" not in r


def _net(r: dict | None) -> float | None:
    return r.get("events_per_s_net") if _ok(r) else None


def _wall(r: dict | None) -> float | None:
    return r.get("events_per_s_wall") if _ok(r) else None


def _failure(r: dict | None) -> str:
    if r is None:
        return NOT_MEASURED
    text = str(r.get("error") or "failed").strip().splitlines()
    first = text[0] if text else "failed"
    return first if first.startswith("not installed") else f"failed: {first[:120]}"


def _system_value(r: dict | None, spark: bool = False) -> str:
    if not _ok(r):
        return _failure(r)
    parts = []
    if spark and r.get("events_per_s_busy"):
        parts.append(f"{r['events_per_s_busy']:,} rows/s (batch durations)")
    parts.append(f"{_num(r.get('events_per_s_net'))} ev/s net of start-up")
    parts.append(f"{_num(r.get('events_per_s_wall'))} wall")
    return ", ".join(parts)


def _num(value) -> str:
    return "" if value is None else f"{value:,.0f}"


def _rate(value, unit: str) -> str:
    return "" if value is None else f"{value:,.0f} {unit}"


def _rss(by_name: dict) -> str:
    return " + ".join(f"{name} {value:,.0f} MB" for name, value in sorted(by_name.items()))


def _ratio(value, base, what: str) -> str:
    return f"{value / base:.2f}x {what}" if value and base else ""


def _times(value, base) -> str | None:
    return f"{value / base:.2f}x" if value and base else None


def _met(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "?"


def _size_mb(text: str) -> float | None:
    """Spark's memory size (512m, 1g) in MB."""
    units = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
    text = text.strip().lower().rstrip("b")
    try:
        return float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text) / 2**20
    except ValueError:
        return None


def _lax(label: str) -> bool:
    """Systems whose parsers accept what the job's rules reject (docs/performance.md, "Peers: Quix Streams and Flink SQL")."""
    return "from_json" in label or "flink" in label.lower()


def _same(label: str, r: dict, same: bool | None) -> str:
    if same is None:
        return ""
    if same or not _lax(label):
        return {True: "yes", False: "NO"}[same]
    return f"no: {r.get('orders_more_than_reference', 0):+,} orders (a laxer parser)"
