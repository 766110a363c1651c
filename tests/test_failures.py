"""Which query failures a restart heals: the texts are the first lines Spark gave here, and the
output topics' failures, raised in the job's process or wrapped by py4j."""

from purchase_analytics.failures import OutputRefused, OutputRetriable, classify_failure, first_line
from purchase_analytics.kafka_client import KafkaSecurity, Secret, explain_write_failure, is_retriable_write_error

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


def py4j_wrapped(error: BaseException) -> str:
    """`error` raised in a foreachBatch handler, as the job's query reports it: py4j puts the
    Python traceback in the Java exception's message (the text Spark 4.2 gave here, paths cut)."""
    return (
        "An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):\n"
        '  File ".../py4j/clientserver.py", line 644, in _call_proxy\n'
        "    return_value = getattr(self.pool[obj_id], method)(*params)\n"
        '  File ".../pyspark/sql/utils.py", line 163, in call\n'
        "    self.func(DataFrame(jdf, wrapped_session_jdf), batch_id)\n"
        '  File ".../purchase_analytics/sinks.py", line 201, in flush\n'
        "    raise OutputRefused(line) from None\n"
        f"{type(error).__module__}.{type(error).__name__}: {error}\n"
        "\n=== Streaming Query ===\n"
        "Identifier: [id = 33556629-f831-4dd1-80d6-678cb316f94c, runId = a00d8649-f5eb-44b3-8519-6b1a54cf78f6]\n"
        "Current State: ACTIVE\nThread State: RUNNABLE\n"
    )


def test_an_output_topic_refusing_a_write_ends_the_job_with_its_one_line_even_through_py4j():
    line = "results topic 'r' refused a record of 150 bytes: larger than the topic's max.message.bytes (20); raise it with ..."
    assert classify_failure(OutputRefused(line), CONFIG) == line
    wrapped = Captured(py4j_wrapped(OutputRefused(line)), "org.apache.spark.api.python.PythonException\n\tat x.y(Z.java:1)")
    assert classify_failure(wrapped, CONFIG) == line
    assert first_line(wrapped) == first_line(OutputRefused(line)) == line


def test_an_output_write_a_restart_heals_restarts_the_job_even_through_py4j():
    error = OutputRetriable("2 record(s) not written to results topic 'r' at b:1 (RequestTimedOutError); a restart ...")
    assert classify_failure(error, CONFIG) is None
    assert classify_failure(Captured(py4j_wrapped(error)), CONFIG) is None
    assert first_line(Captured(py4j_wrapped(error))) == str(error)  # the job's "query failed (...); restarting" line


def test_a_missing_write_acl_names_the_topic_and_the_grant():
    from kafka.errors import TopicAuthorizationFailedError

    security = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="job", sasl_password=Secret("x"))
    line = explain_write_failure(TopicAuthorizationFailedError(), "totals", "results topic", "b:9093", security)
    assert line == (
        "the job's user 'job' may not write to results topic 'totals' at b:9093 (TopicAuthorizationFailedError): grant WRITE and "
        "DESCRIBE on it to User:job (kafka-acls.sh --bootstrap-server b:9093 --add --allow-principal User:job --operation WRITE "
        "--operation DESCRIBE --topic totals; docs/cluster.md)"
    )
    assert not is_retriable_write_error(TopicAuthorizationFailedError())


def test_write_errors_a_restart_heals():
    from kafka.errors import (
        KafkaConnectionError,
        KafkaTimeoutError,
        LeaderNotAvailableError,
        MessageSizeTooLargeError,
        NotEnoughReplicasAfterAppendError,
        NotEnoughReplicasError,
        NotLeaderForPartitionError,
        RequestTimedOutError,
    )

    for error in (
        NotEnoughReplicasError,
        NotEnoughReplicasAfterAppendError,
        LeaderNotAvailableError,
        NotLeaderForPartitionError,
        RequestTimedOutError,
        KafkaConnectionError,
        KafkaTimeoutError,
    ):
        assert is_retriable_write_error(error()), error
    assert not is_retriable_write_error(MessageSizeTooLargeError())
