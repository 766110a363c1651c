"""The job's checkpoint directory: usable, and used by one job at a time.

Two jobs on one checkpoint both fail over and over (CONCURRENT_STREAM_LOG_UPDATE), so the
second is refused at start. The lock is an OS lock (flock) on a file holding the owner's
PID: the kernel drops it when the process dies, so a stale lock cannot block a restart. It
covers both queries' checkpoints, which live under the one directory. A remote checkpoint
(hdfs://, s3a://) has no lock: its store has to keep jobs apart (the job says so at start).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path

LOCK_NAME = ".lock"
SOURCE_NAME = "source.json"  # which Kafka cluster and topic the checkpoint's offsets belong to
SHAPE_NAME = "aggregation.json"  # the windows and groups the checkpoint's state was made with
WINDOWS_DIR = "windows-query"  # Spark's checkpoint of the windows query: offsets, commits, state store
DEAD_LETTERS_DIR = "dead-letters-query"  # Spark's checkpoint of the dead-letter query
# Layouts of earlier versions of the job, whose window state Spark's aggregation cannot read:
# `query` (one query folding its own window state) and `windows` (an earlier windows query).
EARLIER_LAYOUTS = ("query", "windows")


class CheckpointError(RuntimeError):
    pass


def local_path(checkpoint_dir: str) -> Path | None:
    """The local directory of a checkpoint, or None for a remote one (hdfs://, s3a://...)."""
    if checkpoint_dir.startswith("file:"):
        return Path("/" + checkpoint_dir.removeprefix("file:").lstrip("/"))
    return None if "://" in checkpoint_dir else Path(checkpoint_dir)


def query_checkpoint(checkpoint_dir: str, query_dir: str = WINDOWS_DIR) -> str:
    return f"{checkpoint_dir.rstrip('/')}/{query_dir}"


QUERY_METADATA = "metadata"  # Spark's file of a query's stable id, written when the query first starts on its checkpoint


def read_query_id(files) -> str:
    """The stable id Spark gave the query of this checkpoint (its `metadata` file): the same
    across restarts, new for a new checkpoint. `files`: the query's checkpoint directory."""
    return str(json.loads(files.read(QUERY_METADATA))["id"])


def verify_checkpoint(files, checkpoint_dir: str, source: dict[str, str], shape: dict) -> None:
    """Refuse a checkpoint this job would misread, with one line and the fix, and record
    what a new one belongs to. `files` are the checkpoint directory's (LocalFiles, or
    HadoopFiles for any file system Spark writes to: every guard holds for both).
    - Written by an earlier version of the job: its window state is not Spark's.
    - Its offsets count in one topic of one cluster: a wiped broker (a new cluster id) or a
      recreated topic (a new topic id) makes them meaningless, even when the numbers fit.
    - Its state holds windows of one length and slide, grouped by the same fields: Spark
      would read another shape's state without a word (the window length is not in its key).
    """
    names = set(files.names())
    fix = f"start over with a new checkpoint: --checkpoint NEW_DIR, or delete {checkpoint_dir}"
    earlier = [d for d in EARLIER_LAYOUTS if d in names]
    if earlier and WINDOWS_DIR not in names:
        raise CheckpointError(
            f"checkpoint {checkpoint_dir} was written by an earlier version of the job, whose window state Spark's own "
            f"aggregation cannot read; {fix}"
        )
    if SOURCE_NAME in names:
        recorded = json.loads(files.read(SOURCE_NAME))
        changed = [k for k in ("cluster_id", "topic_id") if recorded.get(k) and source.get(k) and recorded[k] != source[k]]
        if recorded.get("topic") == source.get("topic") and changed:
            what = "the Kafka cluster" if "cluster_id" in changed else f"topic '{source['topic']}'"
            raise CheckpointError(
                f"checkpoint {checkpoint_dir} belongs to another incarnation of {what} ({', '.join(changed)} changed: the broker "
                f"was wiped or the topic recreated), so its offsets mean nothing there; {fix}"
            )
    if SHAPE_NAME in names:
        recorded = json.loads(files.read(SHAPE_NAME))
        changed = {k: (recorded.get(k), v) for k, v in shape.items() if recorded.get(k) != v}
        if changed:
            what = ", ".join(f"{k} {old!r} (now {new!r})" for k, (old, new) in changed.items())
            raise CheckpointError(f"checkpoint {checkpoint_dir} holds windows made with {what}; use the same settings, or {fix}")
    files.write(SOURCE_NAME, json.dumps(source) + "\n")
    files.write(SHAPE_NAME, json.dumps(shape) + "\n")


SHAPE_SEPARATOR = "--"  # between a base checkpoint directory and the name of an aggregation shape (make run)


def shape_name(shape: dict) -> str:
    """A folder name for an aggregation shape (queries.checkpoint_shape): the window, the
    slide, the group fields and the state store, e.g. `10-minutes-every-5-minutes-by-furniture-hdfs`."""
    parts = [str(shape["window"])]
    if shape.get("slide"):
        parts.append(f"every {shape['slide']}")
    if shape.get("group_by"):
        parts.append(f"by {','.join(shape['group_by'])}")
    parts.append(str(shape["state_store"]))
    return re.sub(r"[^A-Za-z0-9_.,]+", "-", " ".join(parts)).strip("-").lower()


def shape_checkpoint(base: str, shape: dict) -> str:
    """The checkpoint of an aggregation shape beside `base`: `make run` keeps one per shape,
    so a change of window, slide, groups or state store starts its own instead of being refused."""
    return f"{base.rstrip('/')}{SHAPE_SEPARATOR}{shape_name(shape)}"


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
