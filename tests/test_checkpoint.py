"""The checkpoint: one job per checkpoint (a lock released when its owner ends), its source, how its logs are written."""

import json
import os
import subprocess
import sys

import pytest

from purchase_analytics.checkpoint import (
    CHECKPOINT_FILE_MANAGER,
    LOCAL_CHECKPOINT_FILE_MANAGER,
    LOCAL_FILE_SYSTEM,
    LOCAL_FILE_SYSTEM_SETTINGS,
    WINDOWS_DIR,
    CheckpointError,
    CheckpointLock,
    HadoopFiles,
    LocalFiles,
    local_path,
    use_checkpoint_file_manager,
    verify_checkpoint,
)

SHAPE = {"window": "10 minutes", "slide": None, "group_by": [], "state_store": "hdfs"}


def test_a_second_holder_is_refused_with_the_owner_pid(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from purchase_analytics.checkpoint import CheckpointLock\n"
            "with CheckpointLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path / "ckpt"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CheckpointError, match=rf"in use by another job \(PID {holder.pid}\)"):
            CheckpointLock(str(tmp_path / "ckpt")).__enter__()
    finally:
        holder.kill()
        holder.wait()
    with CheckpointLock(str(tmp_path / "ckpt")):  # a dead owner's lock is no lock
        assert (tmp_path / "ckpt" / ".lock").read_text().strip() == str(os.getpid())


def test_an_unusable_directory_names_the_path_and_the_reason():
    with pytest.raises(CheckpointError, match="cannot use checkpoint directory /etc/hostname/ckpt: Not a directory"):
        CheckpointLock("/etc/hostname/ckpt").__enter__()


def test_remote_checkpoints_are_not_locked_here():
    assert local_path("s3a://bucket/ckpt") is None
    assert local_path("file:///tmp/ckpt") == local_path("/tmp/ckpt")


def guards(files, where: str):
    """Every guard of verify_checkpoint, on one checkpoint directory's files."""
    first = {"topic": "t", "cluster_id": "c1", "topic_id": "id1"}
    verify_checkpoint(files, where, first, SHAPE)  # recorded
    verify_checkpoint(files, where, first, SHAPE)  # the same source: fine
    with pytest.raises(CheckpointError, match=r"another incarnation of topic 't' \(topic_id changed"):
        verify_checkpoint(files, where, {**first, "topic_id": "id2"}, SHAPE)
    with pytest.raises(CheckpointError, match=r"another incarnation of the Kafka cluster \(cluster_id, topic_id changed"):
        verify_checkpoint(files, where, {"topic": "t", "cluster_id": "c2", "topic_id": "id3"}, SHAPE)
    with pytest.raises(CheckpointError, match=r"windows made with window '10 minutes' \(now '5 minutes'\).*--checkpoint NEW_DIR"):
        verify_checkpoint(files, where, first, {**SHAPE, "window": "5 minutes"})
    with pytest.raises(CheckpointError, match=r"group_by \[\] \(now \['furniture'\]\)"):
        verify_checkpoint(files, where, first, {**SHAPE, "group_by": ["furniture"]})
    with pytest.raises(CheckpointError, match=r"slide None \(now '5 minutes'\)"):
        verify_checkpoint(files, where, first, {**SHAPE, "slide": "5 minutes"})
    verify_checkpoint(files, where, {"topic": "other", "cluster_id": "c1", "topic_id": "id9"}, SHAPE)  # another topic: recorded


def test_a_checkpoint_of_another_source_or_shape_is_refused(tmp_path):
    guards(LocalFiles(tmp_path / "ckpt"), str(tmp_path / "ckpt"))


def test_the_guards_hold_for_any_file_system_spark_writes_to(spark, tmp_path):
    """Through Hadoop's file system API (hdfs://, s3a://...): here its local one, by URI."""
    guards(HadoopFiles(spark, f"file://{tmp_path}/remote"), "a remote checkpoint")
    assert json.loads((tmp_path / "remote" / "aggregation.json").read_text()) == SHAPE


def test_a_checkpoint_of_an_earlier_engine_is_refused(tmp_path):
    source = {"topic": "t", "cluster_id": "c", "topic_id": "x"}
    for earlier in ("query", "windows"):
        (tmp_path / earlier / earlier / "offsets").mkdir(parents=True)
        with pytest.raises(CheckpointError, match="written by an earlier version of the job.*--checkpoint NEW_DIR"):
            verify_checkpoint(LocalFiles(tmp_path / earlier), earlier, source, SHAPE)
    (tmp_path / "new" / WINDOWS_DIR / "offsets").mkdir(parents=True)
    verify_checkpoint(LocalFiles(tmp_path / "new"), "new", source, SHAPE)


def test_local_checkpoint_logs_are_written_in_process(spark):
    spark.conf.unset(CHECKPOINT_FILE_MANAGER)
    use_checkpoint_file_manager(spark, "hdfs://namenode/checkpoints/job")
    assert spark.conf.get(CHECKPOINT_FILE_MANAGER, None) is None  # Spark's own choice
    use_checkpoint_file_manager(spark, "file:/tmp/checkpoints/job")
    assert spark.conf.get(CHECKPOINT_FILE_MANAGER) == LOCAL_CHECKPOINT_FILE_MANAGER
    spark._jvm.java.lang.Class.forName(LOCAL_CHECKPOINT_FILE_MANAGER)  # still there in this Spark version


def test_local_checkpoint_files_get_hadoops_modes_from_the_jobs_file_system(spark, tmp_path):
    """The queries' Hadoop configuration names the job's local file system, which sets the
    modes Hadoop's own sets with a `chmod` process (its default umask: 644 and 755)."""
    use_checkpoint_file_manager(spark, str(tmp_path))
    hadoop = spark._jvm.org.apache.hadoop.fs

    def path(name: str = ""):
        return hadoop.Path(f"file://{tmp_path}/{name}")

    def mode(name: str) -> str:
        return oct((tmp_path / name).stat().st_mode & 0o7777)

    try:
        fs = path().getFileSystem(spark._jsparkSession.sessionState().newHadoopConf())
        assert fs.getClass().getName() == LOCAL_FILE_SYSTEM
        fs.create(path("logs/0"), False).close()  # with its checksum file
        assert (mode("logs"), mode("logs/0"), mode("logs/.0.crc")) == ("0o755", "0o644", "0o644")
        fs.setPermission(path("logs/0"), hadoop.permission.FsPermission(0o640))
        fs.setPermission(path("logs"), hadoop.permission.FsPermission(0o1777))  # the sticky bit: Hadoop's own way
        assert (mode("logs"), mode("logs/0")) == ("0o1777", "0o640")
    finally:
        for key in LOCAL_FILE_SYSTEM_SETTINGS:
            spark.conf.unset(key)
