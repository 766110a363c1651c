"""The job's checkpoint directory: usable, and used by one job at a time.

Two jobs on one checkpoint both fail over and over (CONCURRENT_STREAM_LOG_UPDATE), so the
second is refused at start. The lock is an OS lock (flock) on a file holding the owner's
PID: the kernel drops it when the process dies, so a stale lock cannot block a restart.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

LOCK_NAME = ".lock"
SOURCE_NAME = "source.json"  # which Kafka cluster and topic the checkpoint's offsets belong to


class CheckpointError(RuntimeError):
    pass


def local_path(checkpoint_dir: str) -> Path | None:
    """The local directory of a checkpoint, or None for a remote one (hdfs://, s3a://...)."""
    if checkpoint_dir.startswith("file:"):
        return Path("/" + checkpoint_dir.removeprefix("file:").lstrip("/"))
    return None if "://" in checkpoint_dir else Path(checkpoint_dir)


def verify_source(checkpoint_dir: str, source: dict[str, str]) -> None:
    """The checkpoint's offsets count in one topic of one cluster. A wiped broker (a new
    cluster id) or a recreated topic (a new topic id) makes them meaningless, even when the
    numbers still fit, so such a checkpoint is refused; a new one records its source."""
    path = local_path(checkpoint_dir)
    if path is None:
        return  # a remote checkpoint
    recorded_file = path / SOURCE_NAME
    if recorded_file.exists():
        recorded = json.loads(recorded_file.read_text())
        changed = [k for k in ("cluster_id", "topic_id") if recorded.get(k) and source.get(k) and recorded[k] != source[k]]
        if recorded.get("topic") == source.get("topic") and changed:
            what = "the Kafka cluster" if "cluster_id" in changed else f"topic '{source['topic']}'"
            raise CheckpointError(
                f"checkpoint {path} belongs to another incarnation of {what} ({', '.join(changed)} changed: the broker was "
                f"wiped or the topic recreated), so its offsets mean nothing there; start over with a new checkpoint: "
                f"--checkpoint NEW_DIR, or delete {path}"
            )
    path.mkdir(parents=True, exist_ok=True)
    recorded_file.write_text(json.dumps(source) + "\n")


class CheckpointLock:
    def __init__(self, checkpoint_dir: str):
        self.checkpoint_dir = checkpoint_dir
        self._file = None

    def __enter__(self) -> CheckpointLock:
        path = local_path(self.checkpoint_dir)
        if path is None:
            return self  # a remote checkpoint: its store has to keep jobs apart
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = open(path / LOCK_NAME, "a+")
        except OSError as exc:
            raise CheckpointError(
                f"cannot use checkpoint directory {path}: {exc.strerror or exc}; "
                f"choose a writable place with --checkpoint or CHECKPOINT_DIR"
            ) from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "unknown"
            lock.close()
            raise CheckpointError(
                f"checkpoint {path} is in use by another job (PID {owner}); stop that job, or give this one its own --checkpoint"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._file = lock
        return self

    def __exit__(self, *exc) -> None:
        if self._file:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
