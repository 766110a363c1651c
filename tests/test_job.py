"""The streaming job's behaviour, in-process: `queries.start_queries` on the shared SparkSession
and the session broker, available-now trigger. Plus JobSummary on canned progress reports."""

from __future__ import annotations

import json
import random
import time

from pyspark.sql import functions as F
from readers import read_results_db
from test_progress import batch

from purchase_analytics.checkpoint import WINDOWS_DIR
from purchase_analytics.progress import JobSummary
from purchase_analytics.sinks import read_json_lines_totals
from purchase_analytics.transform import EVENT_SCHEMA

from conftest import expected_totals, job_args, read_topic, run_queries, send_raw
from malformed import MALFORMED, VALID, each_beside_a_valid_event

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
    valid, values = each_beside_a_valid_event(T0, 37)
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
    summary = run_queries(spark, job_args(kafka, topic, tmp_path, "--max-offsets-per-trigger", "200", "--watermark", "1 hour"))
    assert read_json_lines_totals(tmp_path / "out") == expected_totals(events)
    assert summary.messages == 600 and summary.batches >= 600 // 200


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


def test_every_micro_batch_runs_the_code_spark_compiled_once(spark, kafka, new_topic, tmp_path):
    """Nothing that changes from batch to batch (the processing time of the rule on `ts`)
    is written into the code Spark generates for the job's queries: a second run over the
    same micro-batches, each with a time of its own, compiles nothing."""
    topic, dlq = new_topic(2), new_topic(1)
    values = [(json.dumps({**VALID, "order_id": f"c{i}", "ts": T0 + 29 * i}).encode(), i % 2) for i in range(90)]
    send_raw(kafka, topic, values + [(payload, 0) for payload, _ in MALFORMED[:5]])
    compiled = spark._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    counts = []
    for run in ("first", "second"):
        before = compiled.getCount()
        config = job_args(kafka, topic, tmp_path / run, "--dlq-topic", dlq, "--max-offsets-per-trigger", "30")
        assert run_queries(spark, config).messages == 95
        counts.append(compiled.getCount() - before)
    assert counts[0] > 0 and counts[1] == 0, counts


def test_a_replayed_batch_changes_no_sink(spark, kafka, new_topic, tmp_path):
    """A crash after the sinks wrote a batch but before Spark committed it: on restart Spark
    runs that batch again with the same id and rows. Simulated by deleting its commit."""
    topic = new_topic(2)
    events = [{**VALID, "order_id": f"r{i}", "price": 100 + i, "ts": T0 + 7 * i} for i in range(300)]
    send_raw(kafka, topic, [(json.dumps(e).encode(), i % 2) for i, e in enumerate(events)])
    config = job_args(kafka, topic, tmp_path, "--max-offsets-per-trigger", "100", "--results-db", str(tmp_path / "results.db"))
    first = run_queries(spark, config)
    query_dir = tmp_path / "ckpt" / WINDOWS_DIR
    commits = sorted((query_dir / "commits").glob("[0-9]*"), key=lambda p: int(p.name))

    def sources(batch_id: int) -> str:
        return (query_dir / "offsets" / str(batch_id)).read_text().splitlines()[-1]

    # uncommit the last batch that read input, and forget the ones after it (they only moved the watermark)
    last_read = max(int(c.name) for c in commits if int(c.name) == 0 or sources(int(c.name)) != sources(int(c.name) - 1))
    for log, first_id in (("commits", last_read), ("offsets", last_read + 1)):
        for entry in (query_dir / log).glob("[0-9]*"):
            if int(entry.name) >= first_id:
                entry.unlink()
                (entry.parent / f".{entry.name}.crc").unlink(missing_ok=True)
    files_before = sorted(p.name for p in (tmp_path / "out").iterdir())

    replay = run_queries(spark, config)
    assert first.messages == 300 and replay.messages > 0  # the last batch ran a second time
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == files_before  # rewrote its own file
    assert read_json_lines_totals(tmp_path / "out") == expected_totals(events)
    assert read_results_db(tmp_path / "results.db") == expected_totals(events)


def textbook_windows(spark, kafka: str, topic: str, checkpoint, max_offsets: int, mode: str = "update") -> dict[int, list]:
    """Spark's own windowed sum as its programming guide writes it, on the same topic and
    micro-batches as the job: batch id -> the rows it emitted (window start ISO, total, orders)."""
    raw = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", max_offsets)
        .load()
    )
    events = raw.select(F.from_json(F.col("value").cast("string"), EVENT_SCHEMA).alias("e")).select(
        F.timestamp_seconds("e.ts").alias("event_time"), "e.price"
    )
    windows = (
        events.withWatermark("event_time", "10 minutes")
        .groupBy(F.window("event_time", "10 minutes"))
        .agg(F.sum("price").alias("total"), F.count("*").alias("orders"))
    )
    emitted: dict[int, list] = {}

    def collect(df, batch_id):
        rows = df.select(F.date_format(F.col("window.start"), "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("start"), "total", "orders").collect()
        emitted[batch_id] = sorted((r.start, r.total, r.orders) for r in rows)

    query = (
        windows.writeStream.outputMode(mode)
        .option("checkpointLocation", str(checkpoint))
        .foreachBatch(collect)
        .trigger(availableNow=True)
        .start()
    )
    try:
        assert query.awaitTermination(180)
    finally:
        query.stop()
    return {b: rows for b, rows in emitted.items() if rows}


def disordered_skewed_topic(kafka: str, topic: str, count: int, seed: int, step_s: int = 1) -> list[dict]:
    """`count` valid events on 3 partitions of very different sizes, `step_s` apart and
    out of order by up to 25 minutes, some exactly on a window boundary or fractional."""
    rng = random.Random(seed)
    events, values = [], []
    for i in range(count):
        ts = T0 + step_s * i - rng.randint(0, 1500)
        ts = ts - ts % 600 if i % 97 == 0 else ts + (rng.random() if i % 5 == 0 else 0)  # boundaries and fractions
        events.append({**VALID, "order_id": f"d{i}", "price": rng.randint(100, 9000), "ts": ts})
        values.append((json.dumps(events[-1]).encode(), rng.choices([0, 1, 2], weights=[6, 3, 1])[0]))
    send_raw(kafka, topic, values)
    return events


def test_the_job_and_the_textbook_query_agree_batch_by_batch(spark, kafka, new_topic, tmp_path):
    """The job's windows are Spark's: over a disordered, skewed topic read in the same
    micro-batches, every batch emits what the textbook query emits, in both output modes,
    and the job's late count is the events the windows did not take (in append mode, where
    the open windows are never emitted, counted from Spark's state store: the same number)."""
    topic = new_topic(3)
    events = disordered_skewed_topic(kafka, topic, 600, seed=30, step_s=3)
    per_trigger = 120  # 5 micro-batches: the watermark moves 4 times
    dropped = {}
    for mode in ("update", "append"):
        expected = textbook_windows(spark, kafka, topic, tmp_path / f"textbook-{mode}", per_trigger, mode)
        out = tmp_path / f"out-{mode}"
        options = ("--max-offsets-per-trigger", str(per_trigger), "--output-mode", mode, "--output-dir", str(out))
        config = job_args(kafka, topic, tmp_path / mode, *options)
        summary = run_queries(spark, config)
        emitted = {}
        for path in sorted(out.glob("batch-*.jsonl")):
            records = [json.loads(line) for line in path.read_text().splitlines()]
            emitted[records[0]["batch_id"]] = sorted((r["window_start"], r["total_purchase"], r["orders"]) for r in records)
        assert emitted == expected, mode
        assert summary.messages == len(events), mode
        dropped[mode] = summary.dropped_late
    kept = sum(orders for _, orders in read_json_lines_totals(tmp_path / "out-update").values())
    print(f"{len(events)} events, {kept} in windows, {dropped} dropped as late; append mode's batches: {sorted(emitted)}")
    assert dropped["update"] == dropped["append"] == len(events) - kept > 0
    starts = [start for rows in emitted.values() for start, _, _ in rows]
    assert len(starts) == len(set(starts))  # append mode: every window once, closed


def test_the_rocksdb_state_store_gives_the_same_windows(spark, kafka, new_topic, tmp_path):
    """STATE_STORE=rocksdb (--state-store): Spark's RocksDB provider keeps the open windows, across a restart."""
    topic = new_topic(2)
    events = [{**VALID, "order_id": f"k{i}", "price": 100 + i, "ts": T0 + 13 * i} for i in range(300)]
    send_raw(kafka, topic, [(json.dumps(e).encode(), i % 2) for i, e in enumerate(events[:200])])
    config = job_args(kafka, topic, tmp_path, "--state-store", "rocksdb", "--max-offsets-per-trigger", "80")
    run_queries(spark, config)
    send_raw(kafka, topic, [(json.dumps(e).encode(), i % 2) for i, e in enumerate(events[200:])])
    run_queries(spark, config)
    assert read_json_lines_totals(tmp_path / "out") == expected_totals(events)
    state = tmp_path / "ckpt" / WINDOWS_DIR / "state" / "0" / "0"
    assert any(p.suffix in (".zip", ".changelog") for p in state.iterdir()), sorted(p.name for p in state.iterdir())  # RocksDB's files
