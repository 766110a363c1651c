"""The open windows between micro-batches (window_state), by hand: Spark's rules for the
watermark, late events and the two output modes, and the state saved in the checkpoint."""

from __future__ import annotations

import json

import pytest

from purchase_analytics.checkpoint import HadoopFiles, LocalFiles
from purchase_analytics.window_state import US, Partial, StateLog, StateMismatch, WindowState

W = 600 * US  # 10-minute windows
T0 = 1_700_000_400 * US  # a window boundary


def part(start_s: int, total: int, orders: int, max_event_s: float) -> Partial:
    return Partial(T0 + start_s * US, total, orders, T0 + round(max_event_s * US))


def shown(outcome) -> list[tuple[int, int, int]]:
    return [(round(w.window_start.timestamp() * US) - T0, w.total_purchase, w.orders) for w in outcome.windows]


def test_the_watermark_moves_at_the_end_of_a_batch_and_drops_closed_windows():
    state = WindowState(W, 300 * US)
    first = state.apply(0, [part(1200, 1000, 1, 1300)], messages=1, rejected=0, append=False)
    assert first.watermark_us == T0 + 1000 * US and first.dropped_late == 0
    # T0+100 falls in [T0, T0+600), which ends before the watermark: dropped, counted in events.
    # T0+700 is older than the watermark, but its window [T0+600, T0+1200) is still open: counted.
    second = state.apply(1, [part(0, 2000, 3, 100), part(600, 4000, 1, 700)], messages=5, rejected=1, append=False)
    assert second.dropped_late == 3 and second.rejected == 1 and second.messages == 5
    assert shown(second) == [(600 * US, 4000, 1)]
    assert second.watermark_us == T0 + 1000 * US  # it never moves back


def test_update_mode_emits_running_totals_and_append_mode_each_closed_window_once():
    update, append = WindowState(W, 300 * US), WindowState(W, 300 * US)
    batches = [[part(0, 100, 1, 10), part(0, 200, 1, 20)], [part(600, 400, 1, 610)], [part(3000, 800, 1, 3000)]]
    updates = [shown(update.apply(i, b, 2, 0, append=False)) for i, b in enumerate(batches)]
    appends = [shown(append.apply(i, b, 2, 0, append=True)) for i, b in enumerate(batches)]
    assert updates == [[(0, 300, 2)], [(600 * US, 400, 1)], [(3000 * US, 800, 1)]]
    assert appends == [[], [], [(0, 300, 2), (600 * US, 400, 1)]]  # the watermark passed both ends
    assert set(append.open) == set(update.open) == {T0 + 3000 * US}  # closed windows left the state


def test_state_round_trips_and_a_replayed_batch_starts_from_the_state_before_it(tmp_path):
    log = StateLog(LocalFiles(tmp_path), W, 300 * US, "ckpt")
    for batch_id in range(4):
        state = log.load_before(batch_id)
        state.apply(batch_id, [part(600 * batch_id, 100, 1, 600 * batch_id)], 1, 0, append=False)
        log.save(batch_id, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2.json", "3.json"]  # the two newest
    replay = log.load_before(3)  # batch 3 again, as after a crash before Spark committed it
    assert replay.to_json() == json.loads((tmp_path / "2.json").read_text())
    assert log.load_before(4).watermark_us == T0 + 1500 * US


def test_a_checkpoint_made_with_another_window_length_is_refused(tmp_path):
    log = StateLog(LocalFiles(tmp_path), W, 0, "ckpt")
    log.save(0, WindowState(W, 0))
    with pytest.raises(StateMismatch, match="checkpoint ckpt holds windows 600 seconds long, this job's are 60"):
        StateLog(LocalFiles(tmp_path), 60 * US, 0, "ckpt").load_before(1)


def test_a_remote_checkpoint_goes_through_hadoop(spark, tmp_path):
    """HadoopFiles, as for hdfs:// or s3a://, here on Hadoop's own local file system."""
    files = HadoopFiles(spark, f"file://{tmp_path}/state")
    assert files.names() == []
    files.write("0.json", '{"a": 1}')
    files.write("0.json", '{"a": 2}')  # replaced whole
    files.write("1.json", "{}")
    assert [n for n in files.names() if not n.startswith(".")] == ["0.json", "1.json"]
    assert files.read("0.json") == '{"a": 2}'
    files.delete("0.json")
    assert "0.json" not in files.names()
