"""Which query failures a restart heals: the texts are the first lines Spark gave here."""

from purchase_analytics.failures import classify_failure

from conftest import job_config

CONFIG = job_config("--checkpoint", "/data/ckpt", "--topic", "purchases")


class Captured(Exception):
    """Shaped like pyspark's captured JVM exceptions: a description and a JVM stack trace."""

    def __init__(self, desc: str, stack: str = ""):
        super().__init__(desc)
        self.desc, self.stackTrace = desc, stack


def test_a_broker_away_or_a_leader_moving_is_restarted():
    for text in (
        "org.apache.kafka.common.errors.TimeoutException: Timeout of 60000ms expired before the position for partition purchases-0 "
        "could be determined",
        "Job aborted due to stage failure",  # with the cause in the JVM trace
    ):
        stack = "Caused by: org.apache.kafka.common.errors.NotLeaderOrFollowerException" if "stage" in text else ""
        assert classify_failure(Captured(text, stack), CONFIG) is None


def test_a_shared_checkpoint_names_the_fix():
    message = classify_failure(Captured("[CONCURRENT_STREAM_LOG_UPDATE] Concurrent update to the log."), CONFIG)
    assert message.startswith("another job is writing to checkpoint /data/ckpt")


def test_offsets_the_broker_no_longer_has_name_a_new_checkpoint():
    message = classify_failure(Captured("Partition purchases-0's offset was changed from 30 to 1, Some data may have been lost"), CONFIG)
    assert "points at offsets that topic 'purchases' no longer has" in message and "--checkpoint NEW_DIR" in message


def test_a_damaged_checkpoint_names_the_fix():
    message = classify_failure(
        Captured("Log file was malformed: failed to read correct log version from /data/ckpt/windows/offsets/3"), CONFIG
    )
    assert message.startswith("checkpoint /data/ckpt is damaged (Log file was malformed")


def test_an_unknown_failure_stops_the_job_with_its_first_line():
    message = classify_failure(Captured("java.lang.IllegalStateException: something new\n\tat x.y(Z.java:1)"), CONFIG)
    assert message == "the query failed: java.lang.IllegalStateException: something new (not a failure a restart heals, so the job stops)"
