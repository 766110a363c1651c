"""The benchmark's peers (bench/quix_peer.py, bench/flink_peer.py) compute the baseline's
windows from the same topic: one topic, the three programs, their totals and counts.

Which events count as late depends on the order an engine reads the partitions in, so the
topic is laid out to make that order irrelevant: partition 0 holds every event in event-time
order (24,000 valid ones over 4 hours, then a few late ones within the watermark and a few
very late ones), partition 1 only messages that every program rejects. Partition 0's
segments are 1 MiB, so the very late events come at least three fetches (polls) after the
events that close their window. Probes placed in partition 0 show, window by window, what
Flink's JSON format and the baseline's `json.loads` accept that the job's rules reject
(bench/flink_peer.py JSON_FORMAT_NOTES)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import flink_sql
from bench.peers import PEERS, available, peer_command
from purchase_analytics.admin import create_topics
from purchase_analytics.events import (
    FIELDS,
    RejectedValue,
    event_json_bytes,
    parse_json_value,
    rejection_reason,
    value_rules,
    window_start_s,
)

from conftest import ROOT, SETTINGS, TOOL_ENV, send_raw

WINDOW_S, WATERMARK_S = 600, 600
VALID_EVENTS = 24_000
SPAN_S = 4 * 3600
T0 = (int(time.time()) - 5 * 3600) // WINDOW_S * WINDOW_S


def _probe(k: int) -> tuple[int, bytes]:
    """Probe k sits in the middle of window k + 1 (TS in its JSON is its time)."""
    ts = T0 + (k + 1) * WINDOW_S + WINDOW_S // 2
    text = PROBES[k][0].replace("TS", str(ts))
    return ts, text.encode("utf-16" if k == UTF16_PROBE else "utf-8")


BASE = '"order_id":"p","customer_id":5,"furniture":"Chair","color":"red"'
# (JSON with TS, what Flink counts (price, orders) or None, what the baseline counts or None)
PROBES = [
    (f'{{{BASE},"price":"200","ts":TS}}', (200, 1), None),  # a number as a string
    (f'{{{BASE},"price":" 3700 ","ts":TS}}', (3700, 1), None),  # ... trimmed
    (f'{{{BASE},"price":1500,"ts":"TS"}}', (1500, 1), None),  # ts as a string
    (f'{{{BASE},"price":300.7,"ts":TS}}', (300, 1), None),  # a fraction, truncated
    (f'{{{BASE},"price":4e2,"ts":TS}}', (400, 1), None),  # an exponent
    (f'{{{BASE},"price":3800.0,"ts":TS}}', (3800, 1), None),
    ('{"order_id":"p","customer_id":5.5,"furniture":"Chair","color":"red","price":1100,"ts":TS}', (1100, 1), None),
    ('{"order_id":"p","customer_id":5,"furniture":"Chair","color":7,"price":1200,"ts":TS}', (1200, 1), None),  # a number as a string field
    ('{"order_id":"p","customer_id":5,"furniture":"Chair","color":true,"price":1300,"ts":TS}', (1300, 1), None),
    ('{"order_id":"p","customer_id":5,"furniture":"Chair","color":{"a":1},"price":1400,"ts":TS}', (1400, 1), None),
    ('{"order_id":12,"customer_id":5,"furniture":"Chair","color":"red","price":1600,"ts":TS}', (1600, 1), None),
    (f'{{{BASE},"price":700,"ts":TS}} x', (700, 1), None),  # content after the object
    (f'{{{BASE},"price":800,"ts":TS}}{{"a":1}}', (800, 1), None),  # two objects
    (f'{{{BASE},"price":900,"ts":TS,"price":901}}', (900, 1), (901, 1)),  # duplicate keys: Flink the first, json.loads the last
    (f'{{{BASE},"price":1700,"ts":TS}}', (1700, 1), (1700, 1)),  # sent as UTF-16 (below)
    (f'\ufeff{{{BASE},"price":1800,"ts":TS}}', (1800, 1), (1800, 1)),  # a UTF-8 byte-order mark
    ('{"order_id":"p","customer_id":5,"furniture":"Chair","color":"\\ud800","price":1900,"ts":TS}', (1900, 1), (1900, 1)),
    (f'{{{BASE},"price":2000,"ts":TS,"x":NaN}}', None, (2000, 1)),  # NaN: Flink drops the message, json.loads reads it
    (f'{{{BASE},"price":NaN,"ts":TS}}', None, None),
    (f'{{{BASE},"price":true,"ts":TS}}', None, None),  # Flink: NULL, then the IS NOT NULL rule
    (f'{{{BASE},"price":99999999999999999999,"ts":TS}}', None, None),
    ('{"order_id":"p","customer_id":5,"furniture":"Chair","price":2100,"ts":TS}', None, None),  # no color
    (f'{{{BASE},"price":2200,"ts":1e400}}', None, None),  # ts infinite
]
UTF16_PROBE = 14
# Rejected by every program; partition 1
REJECTED = [
    b"not json",
    b'{"a":"\xc3\x28"}',  # not UTF-8
    b"[1, 2]",
    b"null",
    b"",
    event_json_bytes("", 5, "Chair", "red", 100, T0 + 60),
    event_json_bytes("r", 0, "Chair", "red", 100, T0 + 60),
    event_json_bytes("r", 5, "Lamp", "red", 100, T0 + 60),
    event_json_bytes("r", 5, "Chair", "red", 0, T0 + 60),
    event_json_bytes("r", 5, "Chair", "red", 150_001, T0 + 60),
    event_json_bytes("r", 5, "Chair", "red", 100, 946_684_799),  # before 2000
    event_json_bytes("r", 5, "Chair", "red", 100, int(time.time()) + 86_400),  # a day ahead
]
# After the baseline ran (json.loads would fail on them): a tombstone and 1,001 levels of nesting
REJECTED_LATER = [None, b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}"]
GRACE_EVENTS, VERY_LATE_EVENTS = 5, 7


def _fill(kafka: str, topic: str) -> tuple[dict[int, list[int]], int]:
    """The topic described above; returns the windows the job's rules give and the valid count."""
    create_topics(kafka, {topic: 2}, configs={topic: {"segment.bytes": str(2**20)}})
    valid = [(T0 + i * SPAN_S // VALID_EVENTS, 100 + i % 9000) for i in range(VALID_EVENTS)]
    values = [(ts, event_json_bytes(f"o{i}", 1 + i % 100, "Chair", "red", price, ts)) for i, (ts, price) in enumerate(valid)]
    values += [_probe(k) for k in range(len(PROBES))]
    values.sort(key=lambda pair: pair[0])
    end = valid[-1][0]
    grace = [(end - 300, 5000) for _ in range(GRACE_EVENTS)]  # their window is still open: counted
    very_late = [(T0 + 60, 7000) for _ in range(VERY_LATE_EVENTS)]  # their window closed hours ago: dropped
    tail = [(ts, event_json_bytes("late", 5, "Chair", "red", price, ts)) for ts, price in grace + very_late]
    send_raw(kafka, topic, [(value, 0) for _, value in values + tail] + [(value, 1) for value in REJECTED])
    return _windows(valid + grace), len(valid) + len(grace)


def _windows(events: list[tuple[int, int]]) -> dict[int, list[int]]:
    """(ts, price) pairs as the job's windows: window start -> [total, orders]."""
    windows: dict[int, list[int]] = {}
    for ts, price in events:
        acc = windows.setdefault(window_start_s(ts, WINDOW_S), [0, 0])
        acc[0] += price
        acc[1] += 1
    return windows


def _with_probes(windows: dict[int, list[int]], column: int) -> dict[str, list[int]]:
    """The windows plus what one program counts of the probes (column 1 Flink, 2 the baseline)."""
    result = {k: list(v) for k, v in windows.items()}
    for k, probe in enumerate(PROBES):
        if probe[column]:
            acc = result[window_start_s(_probe(k)[0], WINDOW_S)]
            acc[0] += probe[column][0]
            acc[1] += probe[column][1]
    return {str(k): v for k, v in sorted(result.items())}


def _probes_counted(column: int) -> int:
    return sum(1 for probe in PROBES if probe[column])


def _start(argv: list[str], cwd: Path = Path("/")) -> subprocess.Popen:
    """The peers run from anywhere (their venv's .pth names the project); the baseline from the root.
    Flink's JVM gets the tests' JVM options."""
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=TOOL_ENV)


def _result(proc: subprocess.Popen, what: str, timeout_s: float = 240) -> dict:
    out, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{err[-3000:]}"
    return json.loads(out)


@pytest.mark.slow
@pytest.mark.kafka
def test_peers_count_the_baselines_windows(kafka, new_topic):
    reasons = [r for r in map(available, PEERS) if r]
    if reasons:
        pytest.skip("; ".join(reasons))
    topic = new_topic(1).replace("source-", "peers-")
    windows, valid = _fill(kafka, topic)
    rules = {"window_s": WINDOW_S, "watermark_s": WATERMARK_S}

    baseline = _result(
        # rounds of 200 records, as micro-batches: the very late tail comes after the watermark has moved
        _start(
            [sys.executable, "-m", "bench.baseline", "--bootstrap-servers", kafka, "--topic", topic, "--round-records", "200"], cwd=ROOT
        ),
        "baseline",
    )
    send_raw(kafka, topic, [(value, 1) for value in REJECTED_LATER])
    quix = _start(peer_command("quix", kafka, topic, **rules))  # side by side: they only read
    flink = _start(peer_command("flink_sql", kafka, topic, **rules))
    quix, flink = _result(quix, "quix peer"), _result(flink, "flink peer")

    messages = VALID_EVENTS + len(PROBES) + GRACE_EVENTS + VERY_LATE_EVENTS + len(REJECTED)
    assert baseline["windows"] == _with_probes(windows, 2)
    assert (baseline["messages"], baseline["rejected"], baseline["dropped_late"]) == (
        messages,
        len(PROBES) + len(REJECTED) - _probes_counted(2),
        VERY_LATE_EVENTS,
    )

    # Quix applies the job's rules exactly: the baseline's windows less what json.loads lets through.
    assert quix["windows"] == {str(k): v for k, v in sorted(windows.items())}
    assert {k: v for k, v in baseline["windows"].items() if k not in _probe_windows(2)} == {
        k: v for k, v in quix["windows"].items() if k not in _probe_windows(2)
    }
    assert (quix["messages"], quix["valid"], quix["dropped_late"]) == (messages + 2, valid + VERY_LATE_EVENTS, VERY_LATE_EVENTS)
    assert quix["rejected"] == len(PROBES) + len(REJECTED) + 2
    assert quix["version"] == "3.28.1" and quix["first_record_s"] > 0

    # Flink: the same windows plus what its JSON format lets through, each claim of its notes seen.
    assert flink["windows"] == _with_probes(windows, 1)
    assert (flink["messages"], flink["valid"], flink["dropped_late"]) == (
        messages + 2,
        valid + VERY_LATE_EVENTS + _probes_counted(1),
        VERY_LATE_EVENTS,
    )
    assert flink["version"] == "2.2.1" and 0 < flink["submit_s"] < flink["elapsed_s"]
    assert "duplicate keys (the first value wins)" in flink["notes"]


def _probe_windows(column: int) -> set[str]:
    return {str(window_start_s(_probe(k)[0], WINDOW_S)) for k, probe in enumerate(PROBES) if probe[column]}


@pytest.mark.parametrize("k", range(len(PROBES)))
def test_every_probe_breaks_the_jobs_rules(k):
    """What Flink or json.loads count above, the job's rules reject (the Quix peer's parse)."""
    try:
        event = parse_json_value(_probe(k)[1])
    except RejectedValue:
        return
    assert rejection_reason(event, 150_000, 300, time.time()) is not None


@pytest.mark.parametrize(
    "raw, reason",
    [
        (None, "null message value"),
        (b"\xff", "value is not valid UTF-8"),
        ('{"a":1}'.encode("utf-16"), "value is not valid UTF-8"),
        (b'\xef\xbb\xbf{"a":1}', "value is not valid JSON"),
        (b'{"a":1,"a":2}', "value is not valid JSON"),
        (b'{"a":NaN}', "value is not valid JSON"),
        (b'{"a":1} x', "value has content after the JSON object"),
        (b'{"a":"\\ud800"}', "value has an invalid Unicode escape (a lone surrogate)"),
        (b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}", "value is nested too deeply (more than 1000 levels)"),
    ],
)
def test_strict_parse_rejects_like_the_job(raw, reason):
    with pytest.raises(RejectedValue, match=re.escape(reason)):
        parse_json_value(raw)


def test_strict_parse_reads_what_the_job_reads():
    assert parse_json_value(b' {"a":"\\ud83d\\ude00","b":[1,{"c":null}]} \n') == {"a": "\U0001f600", "b": [1, {"c": None}]}
    deep = b"[" * 999 + b"]" * 999  # within Spark's 1,000 levels, whatever the stack depth
    assert parse_json_value(b'{"a":' + deep + b"}")["a"]


def test_flink_where_clause_has_every_rule():
    condition = flink_sql.valid_condition(150_000, 300)
    for f in FIELDS:
        assert f"`{f.name}` IS NOT NULL" in condition
    for rule in value_rules(150_000, 300):
        assert flink_sql.rule_holds(rule) in condition
    assert "`furniture` IN ('Chair', 'Table', 'Desk', 'Sofa', 'Bed')" in condition
    assert "`ts` <= UNIX_TIMESTAMP() + 300" in condition
    assert flink_sql.interval(600) == "INTERVAL '0 00:10:00.000' DAY TO SECOND(3)"
    assert flink_sql.interval(90061.5) == "INTERVAL '1 01:01:01.500' DAY TO SECOND(3)"


def test_flink_connector_was_built_for_the_pinned_pyflink():
    """flink-sql-connector-kafka X-2.2 is built for Flink 2.2: requirements-flink.txt must pin a 2.2.x."""
    flink_minor = SETTINGS["FLINK_KAFKA_CONNECTOR_VERSION"].rsplit("-", 1)[1]
    pin = re.search(r"^apache-flink==(\S+)$", (ROOT / "requirements-flink.txt").read_text(), re.M).group(1)
    assert pin.startswith(flink_minor + ".")


def test_peer_command_and_availability():
    argv = peer_command("quix", "localhost:1", "t", window_s=60, price_max=10)
    assert argv[1:] == [
        "-m",
        "bench.quix_peer",
        "--bootstrap-servers",
        "localhost:1",
        "--topic",
        "t",
        "--window-s",
        "60",
        "--price-max",
        "10",
    ]
    assert Path(argv[0]).parent.parent.name == ".venv-quix"
    with pytest.raises(ValueError, match="unknown rule options"):
        peer_command("flink_sql", "localhost:1", "t", window=60)
    for name in PEERS:
        reason = available(name)
        assert reason is None or "make bench-peers" in reason or "java" in reason


@pytest.mark.parametrize(("name", "library"), [("quix", "quixstreams"), ("flink_sql", "pyflink.version")])
def test_a_peer_without_its_library_says_how_to_get_it(name, library, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, library, None)  # an import of it now fails, as outside the peer's venv
    peer = __import__(PEERS[name].module, fromlist=["main"])
    assert peer.main(["--bootstrap-servers", "localhost:1", "--topic", "t"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("error: ") and "make bench-peers" in out.err and PEERS[name].venv in out.err
    assert "Traceback" not in out.err


@pytest.mark.slow
@pytest.mark.kafka
def test_quix_judges_each_partition_by_its_own_time(kafka, new_topic):
    """Events in event-time order, taken in turns by two partitions, four hours of them: Quix
    reads one partition far ahead of the other (the lowest number first), and its windows
    still count every event, none late, as the job's do."""
    reason = available("quix")
    if reason:
        pytest.skip(reason)
    topic = new_topic(2)
    events = [(T0 + i * SPAN_S // 6_000, 100 + i % 500) for i in range(6_000)]
    send_raw(kafka, topic, [(event_json_bytes(f"o{i}", 1, "Chair", "red", price, ts), i % 2) for i, (ts, price) in enumerate(events)])

    quix = _result(_start(peer_command("quix", kafka, topic, window_s=WINDOW_S, watermark_s=WATERMARK_S)), "quix peer")
    assert (quix["messages"], quix["valid"], quix["dropped_late"]) == (len(events), len(events), 0)
    assert quix["windows"] == {str(start): totals for start, totals in _windows(events).items()}
