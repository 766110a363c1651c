"""The streaming job's behaviour, in-process: `job.start_queries` on the shared SparkSession
and the session broker, available-now trigger. Plus JobSummary on canned progress reports."""

from __future__ import annotations

import json
import random
import time

from test_progress import batch

from purchase_analytics.checkpoint import QUERY_DIR
from purchase_analytics.job import JobSummary, _fold_in_sql, fold_batch
from purchase_analytics.sinks import read_json_lines_totals, read_results_db
from purchase_analytics.transform import batch_rows, parse_events
from purchase_analytics.window_state import US, WindowState

from conftest import expected_totals, job_args, read_topic, run_queries, send_raw
from malformed import MALFORMED, VALID

NOW = int(time.time())
T0 = NOW - NOW % 600 - 6 * 3600  # a window boundary a few hours ago


def iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def event(price: int, ts: float, order_id: str = "o") -> bytes:
    return json.dumps({**VALID, "order_id": order_id, "price": price, "ts": ts}).encode()


progress = batch  # a batch as the job sees it: Spark's report (canned) and what the batch did


def test_summary_folds_each_batch_once():
    summary = JobSummary()
    assert summary.is_new("r1", 0) and not summary.is_next("r1", 0)  # a run not seen yet: its recent reports are read
    assert summary.record(progress(0, rows=10, messages=10, rejected=3, dropped=1))
    assert not summary.is_new("r1", 0) and summary.is_new("r1", 1) and summary.is_new("r2", 0)
    assert summary.is_next("r1", 1) and not summary.is_next("r1", 2) and not summary.is_next("r2", 1)  # the last report alone will do
    summary.record(progress(1, rows=5, messages=5))
    assert (summary.batches, summary.messages, summary.rejected, summary.dropped_late) == (2, 15, 3, 1)
    assert summary.line() == (
        "summary: 2 batches, 15 messages, 12 valid, 3 rejected (dead-letter topic), 1 dropped as late by the watermark"
    )


def test_summary_skips_batches_that_only_moved_the_watermark_and_names_restarts():
    summary = JobSummary()
    assert not summary.record(progress(4, rows=0, messages=0))
    assert not summary.is_new("r1", 4)  # still remembered as seen
    assert summary.record(progress(5, rows=0, messages=0, dropped=2))  # dropped rows are news
    summary.restarts = 2
    assert summary.batches == 1 and summary.line().endswith("2 dropped as late by the watermark, 2 restarts from the checkpoint")


def test_malformed_messages_go_to_the_dead_letter_topic_and_totals_stay_exact(spark, kafka, new_topic, tmp_path):
    topic, dlq = new_topic(3), new_topic(1)
    values, valid = [], []
    for i, (payload, _) in enumerate(MALFORMED):
        good = {**VALID, "order_id": f"v{i}", "price": 100 + i, "ts": T0 + 37 * i}
        valid.append(good)
        values += [(json.dumps(good).encode(), i % 3), (payload, (i + 1) % 3)]
    send_raw(kafka, topic, values)

    summary = run_queries(spark, job_args(kafka, topic, tmp_path, "--dlq-topic", dlq))
    assert (summary.messages, summary.rejected) == (2 * len(MALFORMED), len(MALFORMED))
    assert read_json_lines_totals(tmp_path / "out") == expected_totals(valid)

    dead = read_topic(kafka, dlq)
    assert len(dead) == len(MALFORMED)
    sources = {(int(dict(r.headers)["source_partition"]), int(dict(r.headers)["source_offset"])): r for r in dead}
    by_payload = {}
    for record in read_topic(kafka, topic):
        if (record.partition, record.offset) in sources:
            by_payload.setdefault(record.value, []).append(sources[(record.partition, record.offset)])
    for payload, reason in MALFORMED:
        letters = by_payload.pop(payload)
        letter = letters.pop()
        assert letter.value == payload  # the original bytes
        headers = {name: value.decode() for name, value in letter.headers}
        assert letter.key.decode() == f"{topic}-{headers['source_partition']}-{headers['source_offset']}"
        assert headers["rejection_reason"].startswith(reason)
        assert headers["source_topic"] == topic
        if letters:
            by_payload[payload] = letters


def test_late_events_follow_the_watermark(spark, kafka, new_topic, tmp_path):
    """10-minute windows, 5-minute watermark, one message per micro-batch so the
    watermark moves between them. Spark filters late rows with the watermark of the
    batch before (it moves at the end of a batch), hence the second message."""
    topic = new_topic(1)
    send_raw(
        kafka,
        topic,
        [
            (event(1000, T0 + 1300, "a"), 0),  # window [T0+1200, T0+1800); watermark becomes T0+1000
            (event(16000, T0 + 1300, "a2"), 0),  # after this batch, late rows are judged by T0+1000
            (event(2000, T0 + 100, "b"), 0),  # window ends T0+600 <= watermark: dropped
            (event(4000, T0 + 700, "c"), 0),  # late, but its window [T0+600, T0+1200) is still open: counted
            (event(8000, T0 + 1200, "d"), 0),  # exactly on a boundary: the later window
        ],
    )
    summary = run_queries(spark, job_args(kafka, topic, tmp_path, "--max-offsets-per-trigger", "1", "--watermark", "5 minutes"))
    assert read_json_lines_totals(tmp_path / "out") == {iso(T0 + 600): (4000, 1), iso(T0 + 1200): (25000, 3)}
    assert summary.dropped_late == 1


def test_out_of_order_events_across_partitions(spark, kafka, new_topic, tmp_path):
    topic = new_topic(3)
    rng = random.Random(5)
    events = [
        {**VALID, "order_id": f"o{i}", "price": rng.randint(100, 5000), "ts": T0 + rng.randint(0, 1799) + rng.random()} for i in range(600)
    ]
    send_raw(kafka, topic, [(json.dumps(e).encode(), rng.randrange(3)) for e in events])  # shuffled times, random partitions
    summary = run_queries(spark, job_args(kafka, topic, tmp_path, "--max-offsets-per-trigger", "90", "--watermark", "1 hour"))
    assert read_json_lines_totals(tmp_path / "out") == expected_totals(events)
    assert summary.messages == 600 and summary.batches >= 600 // 90


def test_append_mode_emits_each_closed_window_once(spark, kafka, new_topic, tmp_path):
    topic = new_topic(1)
    send_raw(
        kafka,
        topic,
        [
            (event(100, T0 + 10, "a"), 0),
            (event(200, T0 + 20, "b"), 0),
            (event(400, T0 + 610, "c"), 0),
            (event(800, T0 + 3000, "d"), 0),  # moves the watermark past the first two windows
        ],
    )
    run_queries(
        spark, job_args(kafka, topic, tmp_path, "--max-offsets-per-trigger", "2", "--output-mode", "append", "--watermark", "5 minutes")
    )
    lines = [json.loads(line) for path in sorted((tmp_path / "out").glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert [(rec["window_start"], rec["total_purchase"], rec["orders"]) for rec in lines] == [(iso(T0), 300, 2), (iso(T0 + 600), 400, 1)]


def test_consumers_polling_a_few_records_at_a_time_read_every_message_once(spark, kafka, new_topic, tmp_path):
    """--max-poll-records (Kafka's max.poll.records) only changes how many records one poll of
    the source's consumers returns: 3 a poll over two partitions gives the same totals."""
    topic = new_topic(2)
    events = [{**VALID, "order_id": f"p{i}", "price": 100 + i, "ts": T0 + 11 * i} for i in range(200)]
    send_raw(kafka, topic, [(json.dumps(e).encode(), i % 2) for i, e in enumerate(events)])
    config = job_args(kafka, topic, tmp_path, "--max-poll-records", "3")
    assert config.max_poll_records == 3
    summary = run_queries(spark, config)
    assert (summary.messages, summary.rejected) == (200, 0)
    assert read_json_lines_totals(tmp_path / "out") == expected_totals(events)


def test_a_replayed_batch_changes_no_sink(spark, kafka, new_topic, tmp_path):
    """A crash after the sinks wrote a batch but before Spark committed it: on restart Spark
    runs that batch again with the same id and rows. Simulated by deleting its commit."""
    topic = new_topic(2)
    events = [{**VALID, "order_id": f"r{i}", "price": 100 + i, "ts": T0 + 7 * i} for i in range(300)]
    send_raw(kafka, topic, [(json.dumps(e).encode(), i % 2) for i, e in enumerate(events)])
    config = job_args(kafka, topic, tmp_path, "--max-offsets-per-trigger", "100", "--results-db", str(tmp_path / "results.db"))
    first = run_queries(spark, config)
    commits = sorted((tmp_path / "ckpt" / QUERY_DIR / "commits").glob("[0-9]*"), key=lambda p: int(p.name))
    last = commits[-1]
    last.unlink()
    (last.parent / f".{last.name}.crc").unlink(missing_ok=True)
    files_before = sorted(p.name for p in (tmp_path / "out").iterdir())

    replay = run_queries(spark, config)
    assert first.messages == 300 and replay.messages > 0  # the last batch ran a second time
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == files_before  # rewrote its own file
    assert read_json_lines_totals(tmp_path / "out") == expected_totals(events)
    assert read_results_db(tmp_path / "results.db") == expected_totals(events)


def _plan(df) -> str:
    return df._jdf.queryExecution().analyzed().getClass().getSimpleName()


def test_the_fold_reads_a_batch_once_for_its_windows_and_its_dead_letters(spark):
    """The job's fold (BatchFold.java) gives the windows, counts and state of Spark SQL's
    grouping, in one stage, and the rejected messages from the same pass; past its budget, the
    same dead letters read from the batch again."""
    values = [(event(100 + i, T0 + 37 * i, f"o{i}"), "t", i % 2, i) for i in range(60)]
    values += [(b"not json", "t", 0, 60), (event(-5, T0, "neg"), "t", 1, 61), (b"\xff" * 3000, "t", 1, 62)]
    raw = spark.createDataFrame(values, "value binary, topic string, partition int, offset long")  # two partitions (local[2])
    rows = batch_rows(parse_events(raw, 150_000))
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("fold", "fold")
    outcome, dead = fold_batch(rows, WindowState(600 * US, 600 * US), 0, append=False)
    stages = [len(tracker.getJobInfo(job).stageIds) for job in tracker.getJobIdsForGroup("fold")]
    spark.sparkContext.setJobGroup("", "")
    in_sql, dead_in_sql = _fold_in_sql(rows, WindowState(600 * US, 600 * US), 0, append=False)
    assert outcome == in_sql and stages == [1]
    assert (outcome.messages, outcome.rejected, sum(w.orders for w in outcome.windows)) == (63, 3, 60)
    assert len(outcome.windows) == 4 and sum(w.total_purchase for w in outcome.windows) == sum(100 + i for i in range(60))

    def letters(df):
        return sorted((r.partition, r.offset, bytes(r.value), r.rejection_reason) for r in df.collect())

    expected = letters(dead_in_sql)
    assert [(p, o) for p, o, _, _ in expected] == [(0, 60), (1, 61), (1, 62)]
    assert letters(dead) == expected and _plan(dead) == "LocalRelation"  # kept from the one pass, not read again
    over_budget, read_again = fold_batch(rows, WindowState(600 * US, 600 * US), 0, append=False, budget_bytes=1000)
    assert over_budget == outcome and letters(read_again) == expected and _plan(read_again) != "LocalRelation"
    # The budget is the batch's, halved for its two tasks: the second (all three rejected messages, about 3,400 bytes) fits in
    # half of 8,000, not in half of 6,000.
    assert _plan(fold_batch(rows, WindowState(600 * US, 600 * US), 0, append=False, budget_bytes=8000)[1]) == "LocalRelation"
    assert _plan(fold_batch(rows, WindowState(600 * US, 600 * US), 0, append=False, budget_bytes=6000)[1]) != "LocalRelation"
    valid_only = batch_rows(parse_events(raw.where("offset < 60"), 150_000))
    assert fold_batch(valid_only, WindowState(600 * US, 600 * US), 0, append=False)[1] is None
