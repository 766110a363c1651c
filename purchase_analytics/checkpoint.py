"""The job's checkpoint directory: usable, and used by one job at a time.

Two jobs on one checkpoint both fail over and over (CONCURRENT_STREAM_LOG_UPDATE), so the
second is refused at start. The lock is an OS lock (flock) on a file holding the owner's
PID: the kernel drops it when the process dies, so a stale lock cannot block a restart.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = ".lock"
SOURCE_NAME = "source.json"  # which Kafka cluster and topic the checkpoint's offsets belong to
QUERY_DIR = "query"  # Spark's checkpoint of the job's one query, and the window state beside its logs
EARLIER_LAYOUT = "windows"  # before one query did both: a windows query (and a dead-letter query)


class CheckpointError(RuntimeError):
    pass


def local_path(checkpoint_dir: str) -> Path | None:
    """The local directory of a checkpoint, or None for a remote one (hdfs://, s3a://...)."""
    if checkpoint_dir.startswith("file:"):
        return Path("/" + checkpoint_dir.removeprefix("file:").lstrip("/"))
    return None if "://" in checkpoint_dir else Path(checkpoint_dir)


def query_checkpoint(checkpoint_dir: str) -> str:
    return f"{checkpoint_dir.rstrip('/')}/{QUERY_DIR}"


def verify_source(checkpoint_dir: str, source: dict[str, str]) -> None:
    """The checkpoint's offsets count in one topic of one cluster. A wiped broker (a new
    cluster id) or a recreated topic (a new topic id) makes them meaningless, even when the
    numbers still fit, so such a checkpoint is refused; a new one records its source."""
    path = local_path(checkpoint_dir)
    if path is None:
        return  # a remote checkpoint
    if (path / EARLIER_LAYOUT / "offsets").is_dir() and not (path / QUERY_DIR).exists():
        raise CheckpointError(
            f"checkpoint {path} was written by an earlier version of the job (two queries; now one query reads each message "
            f"once), and its window state cannot be carried over; start over with a new checkpoint: --checkpoint NEW_DIR, "
            f"or delete {path}"
        )
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


class LocalFiles:
    """Small files in a local directory, each written whole or not at all."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir()) if self.dir.is_dir() else []

    def read(self, name: str) -> str:
        return (self.dir / name).read_text()

    def write(self, name: str, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{name}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / name)

    def delete(self, name: str) -> None:
        (self.dir / name).unlink(missing_ok=True)


class HadoopFiles:
    """The same, in a remote checkpoint (hdfs://, s3a://, ...), through the Hadoop
    FileSystem of the job's Spark session, which Spark's own checkpoint uses too."""

    def __init__(self, spark, directory: str):
        jvm = spark._jvm
        self._path = lambda name=None: jvm.org.apache.hadoop.fs.Path(directory if name is None else f"{directory.rstrip('/')}/{name}")
        self._fs = self._path().getFileSystem(spark._jsc.hadoopConfiguration())
        self._charset = jvm.java.nio.charset.StandardCharsets.UTF_8

    def names(self) -> list[str]:
        if not self._fs.exists(self._path()):
            return []
        return sorted(status.getPath().getName() for status in self._fs.listStatus(self._path()))

    def read(self, name: str) -> str:
        stream = self._fs.open(self._path(name))
        try:
            return bytes(stream.readAllBytes()).decode()
        finally:
            stream.close()

    def write(self, name: str, text: str) -> None:
        tmp = self._path(f".{name}.tmp")
        stream = self._fs.create(tmp, True)
        try:
            stream.write(bytearray(text.encode()))
        finally:
            stream.close()
        self._fs.delete(self._path(name), False)
        if not self._fs.rename(tmp, self._path(name)):
            raise OSError(f"could not rename {tmp} to {name}")

    def delete(self, name: str) -> None:
        self._fs.delete(self._path(name), False)


def checkpoint_files(spark, directory: str) -> LocalFiles | HadoopFiles:
    """Files under a checkpoint directory: local ones directly, remote ones through Hadoop."""
    path = local_path(directory)
    return LocalFiles(path) if path is not None else HadoopFiles(spark, directory)


# Spark writes its offset and commit logs through Hadoop's FileContext by default, which
# renames a local file by forking `readlink` (about eight processes a micro-batch, 75 ms of
# walCommit and as much of commitOffsets at 10,000 events/s). Its FileSystem API renames
# in-process; for a local directory that is just as atomic.
CHECKPOINT_FILE_MANAGER = "spark.sql.streaming.checkpointFileManagerClass"
LOCAL_CHECKPOINT_FILE_MANAGER = "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
# Hadoop's local file system then still forks `chmod` for every file it creates (the log
# entry and its checksum, 7-8 ms each: about 30 ms a micro-batch). The job's own one
# (jvm/src/purchase_analytics/NioLocalFileSystem.java, in the wire parser's jar) sets the mode
# in-process. Hadoop caches the first file system of a scheme for the whole JVM (spark-submit's
# own, before the job's jar is loaded), so the queries' configuration asks for a new one.
LOCAL_FILE_SYSTEM = "purchase_analytics.NioLocalFileSystem"
LOCAL_FILE_SYSTEM_SETTINGS = {"fs.file.impl": LOCAL_FILE_SYSTEM, "fs.file.impl.disable.cache": "true"}


def use_checkpoint_file_manager(spark, checkpoint_dir: str) -> None:
    """Before a query starts: the fastest way Spark can write this checkpoint's logs."""
    if local_path(checkpoint_dir) is None:
        return
    spark.conf.set(CHECKPOINT_FILE_MANAGER, LOCAL_CHECKPOINT_FILE_MANAGER)
    if spark._jvm.org.apache.spark.util.Utils.classIsLoadable(LOCAL_FILE_SYSTEM):  # `make jars` built it
        for key, value in LOCAL_FILE_SYSTEM_SETTINGS.items():
            spark.conf.set(key, value)


OFFSETS_DIR = "offsets"  # Spark's offset log: one file per planned micro-batch, named by its id


@dataclass(frozen=True)
class PlannedBatch:
    """A planned micro-batch, from its entry in Spark's offset log."""

    time_s: float  # epoch seconds: what `current_timestamp()` means in it, the same when it runs again after a crash


def planned_batch(offsets, batch_id: int) -> PlannedBatch:
    """Batch `batch_id` of the offset log (`offsets` are the files of its directory)."""
    return PlannedBatch(_entry_time_s(offsets.read(str(batch_id))))


def _entry_time_s(entry: str) -> float:
    return json.loads(entry.splitlines()[1])["batchTimestampMs"] / 1000


def earliest_batch_time_s(offsets, now_s: float) -> float:
    """The earliest time any coming micro-batch of a query can have: the last planned
    batch's (it may run again), or now for a new checkpoint. An entry that cannot be read is
    left to Spark, which refuses it with its own error (failures.py names the fix)."""
    planned = [int(name) for name in offsets.names() if name.isdigit()]
    try:
        return min(now_s, _entry_time_s(offsets.read(str(max(planned))))) if planned else now_s
    except (OSError, IndexError, KeyError, ValueError):
        return now_s
