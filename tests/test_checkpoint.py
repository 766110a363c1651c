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
    CheckpointError,
    CheckpointLock,
    LocalFiles,
    PlannedBatch,
    local_path,
    planned_batch,
    use_checkpoint_file_manager,
    verify_source,
)


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


def test_a_checkpoint_of_another_cluster_or_topic_incarnation_is_refused(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    (tmp_path / "ckpt").mkdir()
    first = {"topic": "t", "cluster_id": "c1", "topic_id": "id1"}
    verify_source(ckpt, first)  # recorded
    verify_source(ckpt, first)  # the same source: fine
    with pytest.raises(CheckpointError, match=r"another incarnation of topic 't' \(topic_id changed"):
        verify_source(ckpt, {**first, "topic_id": "id2"})
    with pytest.raises(CheckpointError, match=r"another incarnation of the Kafka cluster \(cluster_id, topic_id changed"):
        verify_source(ckpt, {"topic": "t", "cluster_id": "c2", "topic_id": "id3"})
    verify_source(ckpt, {"topic": "other", "cluster_id": "c1", "topic_id": "id9"})  # another topic: a new source, recorded


def test_a_checkpoint_of_the_earlier_two_query_job_is_refused(tmp_path):
    (tmp_path / "old" / "windows" / "offsets").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="written by an earlier version of the job"):
        verify_source(str(tmp_path / "old"), {"topic": "t", "cluster_id": "c", "topic_id": "x"})
    (tmp_path / "new" / "query" / "offsets").mkdir(parents=True)
    verify_source(str(tmp_path / "new"), {"topic": "t", "cluster_id": "c", "topic_id": "x"})


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


def test_a_batchs_time_comes_from_sparks_offset_log(tmp_path):
    def entry(time_ms: int, *sources: dict) -> str:
        return "\n".join(["v1", json.dumps({"batchWatermarkMs": 0, "batchTimestampMs": time_ms}), *map(json.dumps, sources)])

    (tmp_path / "0").write_text(entry(1_000, {"purchases": {"0": 10, "1": 5}}))
    (tmp_path / "1").write_text(entry(2_500, {"purchases": {"0": 40, "1": 25}}))
    (tmp_path / "2").write_text(entry(4_000, {"purchases": {"0": 40, "1": 25, "2": 7}}))  # a partition added
    (tmp_path / "3").write_text("v1\n{not json")
    (tmp_path / "4").write_text(entry(5_000, {"purchases": {"0": 50, "1": 25, "2": 7}}))
    offsets = LocalFiles(tmp_path)
    assert planned_batch(offsets, 1) == PlannedBatch(2.5)
    assert [planned_batch(offsets, b).time_s for b in (0, 1, 2, 4)] == [1.0, 2.5, 4.0, 5.0]  # after a bad entry too
    with pytest.raises(ValueError):
        planned_batch(offsets, 3)  # a bad entry of its own: Spark refuses it too
    with pytest.raises(FileNotFoundError):
        planned_batch(offsets, 5)
