"""The job's checkpoint directory: usable, and used by one job at a time.

Two jobs on one checkpoint both fail over and over (CONCURRENT_STREAM_LOG_UPDATE), so the
second is refused at start. The lock is an OS lock (flock) on a file holding the owner's
PID: the kernel drops it when the process dies, so a stale lock cannot block a restart.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class CheckpointError(RuntimeError):
    pass


def local_path(checkpoint_dir: str) -> Path | None:
    """The local directory of a checkpoint, or None for a remote one (hdfs://, s3a://...)."""
    if checkpoint_dir.startswith("file:"):
        return Path("/" + checkpoint_dir.removeprefix("file:").lstrip("/"))
    return None if "://" in checkpoint_dir else Path(checkpoint_dir)


class CheckpointLock:
    def __init__(self, checkpoint_dir: str):
        self.checkpoint_dir = checkpoint_dir
        self._file = None

    def __enter__(self) -> "CheckpointLock":
        path = local_path(self.checkpoint_dir)
        if path is None:
            return self  # a remote checkpoint: its store has to keep jobs apart
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = open(path / LOCK_NAME, "a+")
        except OSError as exc:
            raise CheckpointError(f"cannot use checkpoint directory {path}: {exc.strerror or exc}; "
                                  f"choose a writable place with --checkpoint or CHECKPOINT_DIR") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "unknown"
            lock.close()
            raise CheckpointError(f"checkpoint {path} is in use by another job (PID {owner}); stop that job, "
                                  f"or give this one its own --checkpoint") from None
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
