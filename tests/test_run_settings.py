"""`make run` with any settings, one run after another: a checkpoint per aggregation shape;
and `make wipe` deletes what its help names. No broker, no JVM."""

from __future__ import annotations

from pathlib import Path

from purchase_analytics.runtime.local import run_checkpoint_args, wipe

from conftest import SETTINGS


def checkpoint(**settings: str) -> str:
    return run_checkpoint_args({**SETTINGS, **settings}, ["--master", "local[*]"])[1]


def test_make_run_keeps_a_checkpoint_per_aggregation_shape():
    base = SETTINGS["CHECKPOINT_DIR"]
    default = checkpoint()
    assert default == f"{base}--10-minutes-hdfs"
    assert checkpoint(GROUP_BY="furniture") == f"{base}--10-minutes-by-furniture-hdfs"
    assert checkpoint(WINDOW_SLIDE="5 minutes") == f"{base}--10-minutes-every-5-minutes-hdfs"
    assert checkpoint(WINDOW_DURATION="1 hour", GROUP_BY="furniture,color", STATE_STORE="rocksdb") == (
        f"{base}--1-hour-by-furniture,color-rocksdb"
    )
    assert checkpoint(WATERMARK_DELAY="1 minute", OUTPUT_MODE="append") == default  # the state does not depend on these
    assert run_checkpoint_args(SETTINGS, ["--group-by", "color", "--checkpoint", "mine"]) == []  # the user's own: as given


def test_wipe_deletes_the_checkpoints_and_the_results_the_settings_name(tmp_path):
    data, root = tmp_path / ".data", tmp_path / "project"
    files = [
        data / "kafka" / "meta.properties",
        data / "checkpoints" / "purchase-aggregator--10-minutes-hdfs" / "metadata",
        root / "ck" / "base" / "metadata",
        root / "ck" / "base--10-minutes-by-furniture-hdfs" / "metadata",
        root / "out" / "batch-000000000000-q.jsonl",
        root / "results.db",
    ]
    kept = [root / "ck" / "other" / "metadata", root / "out" / "notes.txt"]
    for path in files + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    settings = {"CHECKPOINT_DIR": "ck/base", "OUTPUT_DIR": "out", "RESULTS_DB": "results.db"}
    assert wipe(settings, data, root) == ["broker data", "checkpoints", "the batch files in out", "results.db"]
    assert [p for p in files if p.exists()] == [] and all(p.exists() for p in kept)
    assert Path(root / "out").is_dir()
