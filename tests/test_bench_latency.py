"""The bench's send-to-sink latency (bench/latency.py) from a checkpoint's offset log and the
JSON-lines files' times, on files made by hand."""

import json
import os
import time

from bench.common import checkpoint_offsets
from bench.latency import OffsetLogRecorder, latencies_s


def write_offsets(offsets, batch_id: int, end: int) -> None:
    (offsets / str(batch_id)).write_text("v1\n" + json.dumps({"batchTimestampMs": 0}) + "\n" + json.dumps({"t": {"0": end}}))


def write_batches(tmp_path, batches: dict[int, tuple[int, float]]):
    """batch id -> (end offset of partition 0, output time in s)."""
    offsets, out = tmp_path / "query" / "offsets", tmp_path / "out"
    offsets.mkdir(parents=True)
    out.mkdir()
    for batch_id, (end, output_s) in batches.items():
        write_offsets(offsets, batch_id, end)
        f = out / f"batch-{batch_id:012d}.jsonl"
        f.write_text("{}\n")
        os.utime(f, ns=(int(output_s * 1e9), int(output_s * 1e9)))
    return tmp_path / "query", out


def test_each_record_takes_the_time_of_the_batch_that_read_it(tmp_path):
    query, out = write_batches(tmp_path, {0: (10, 101.0), 1: (20, 102.5)})
    records = {0: [(0, 100_000), (9, 100_500), (10, 101_000), (19, 102_000)]}
    measured = latencies_s(records, checkpoint_offsets(query, committed_only=False), out)
    assert measured.values_s == [1.0, 0.5, 1.5, 0.5]
    assert (measured.without_output, measured.left_the_log) == (0, 0)


def test_records_of_batches_gone_from_the_offset_log_are_left_out(tmp_path):
    """Spark keeps the last 100 batches: batch 150's start is batch 149's end, no longer known."""
    query, out = write_batches(tmp_path, {150: (1500, 200.0), 151: (1510, 201.0)})
    records = {0: [(1480, 190_000), (1499, 199_500), (1505, 200_500), (1510, 201_000)]}
    measured = latencies_s(records, checkpoint_offsets(query, committed_only=False), out)
    assert measured.values_s == [0.5]  # only offset 1505, read by batch 151
    assert (measured.left_the_log, measured.without_output) == (2, 1)  # offset 1510: no batch has read it yet


def test_the_recorder_keeps_batches_spark_has_since_deleted(tmp_path):
    """Spark deletes the oldest offset files as it plans new batches; read while the input
    runs, every batch's end offsets are kept."""
    query, _ = write_batches(tmp_path, {0: (10, 101.0), 1: (20, 102.0)})
    with OffsetLogRecorder(query, interval_s=0.02) as recorder:
        deadline = time.monotonic() + 10
        while len(recorder.planned) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        (query / "offsets" / "0").unlink()
        write_offsets(query / "offsets", 2, 30)
    assert recorder.planned == {0: {0: 10}, 1: {0: 20}, 2: {0: 30}}
