"""Which query failures a restart can heal, and one line for the rest.

A restart from the checkpoint heals what goes away by itself: the broker away for a while,
a partition leader moving, the topic not there yet. It cannot heal a damaged checkpoint, a
checkpoint that points at offsets the broker no longer has, two jobs on one checkpoint or
a refused login: retrying those only delays the same error, so they end the job at once
with the cause and the fix.

The job's own output topics (results, metrics) raise one of two errors when a write fails
(sinks.KafkaPublisher): OutputRetriable, which a restart heals, or OutputRefused, whose
message is the line that ends the job. Raised in a foreachBatch handler, they reach the
query's failure inside a JVM exception, as the last line of the Python traceback py4j put
in its message, and are recognised there too.
"""

from __future__ import annotations

import re

from .config import AggregatorConfig

MAX_RESTARTS = 5  # in a row: a batch that completes after a restart gives them back


def backoff_s(attempt: int) -> float:
    """The wait before the attempt-th retry of a query or of a write: 2, 4, 8, 16, then 30 s."""
    return min(2**attempt, 30)


class JobFailed(RuntimeError):
    """A failure that a restart cannot heal: the message names the cause and the fix."""


class OutputWriteError(RuntimeError):
    """A write to one of the job's own output topics (results, metrics) did not succeed."""


class OutputRetriable(OutputWriteError):
    """The write failed in a way a restart from the checkpoint heals (the broker away, a
    leader moving, too few in-sync replicas, a timeout): the batch runs again and writes
    the same records again."""


class OutputRefused(OutputWriteError):
    """The broker refused the write for good (a record larger than the topic takes, a
    missing ACL, ...). The message is the one line the user reads: topic, cause and fix."""


# How these two look inside a JVM error when raised in a foreachBatch handler: py4j puts the
# Python traceback, whose last line is `module.Class: message`, in the Java exception's message.
_OUTPUT = re.compile(rf"\b({OutputRefused.__name__}|{OutputRetriable.__name__}): ([^\r\n]+)")

# (markers in the error or its JVM trace, what the user reads: {checkpoint} and {topic} filled in)
_FATAL: list[tuple[tuple[str, ...], str]] = [
    (
        ("CONCURRENT_STREAM_LOG_UPDATE", "ConcurrentModificationException", "concurrently using"),
        "another job is writing to checkpoint {checkpoint}; stop it, or give this job its own --checkpoint",
    ),
    (
        ("Some data may have been lost", "partitions are gone", "offset was changed from", "is out of range"),
        "checkpoint {checkpoint} points at offsets that topic '{topic}' no longer has (was the broker wiped or the topic "
        "recreated?); start over with a new checkpoint: --checkpoint NEW_DIR, or delete {checkpoint}",
    ),
    (
        (
            "Log file was malformed",
            "Incomplete log file",
            "Unsupported log version",
            "UNSUPPORTED_LOG_VERSION",
            "EOFException",
            "JsonParseException",
            "JsonMappingException",
            "MismatchedInputException",
            "Unexpected end-of-input",
            "Unrecognized token",
            "Failed to read",
            "CANNOT_LOAD_STATE_STORE",
            "Error reading delta file",
            "Error reading snapshot file",
            "INVALID_CHECKPOINT",
            "checksum",
            "ChecksumException",  # Hadoop's local file system: a log file changed behind its .crc
            "Checksum error",
        ),
        "checkpoint {checkpoint} is damaged ({detail}); delete it or use another --checkpoint to start over "
        "(the new query reads the topic from STARTING_OFFSETS)",
    ),
    (("InvalidTopicException", "INVALID_TOPIC"), "topic name refused by the broker ({detail})"),
    (
        ("SaslAuthenticationException", "AuthenticationException", "SslAuthenticationException"),
        "the broker refused the login ({detail}); check the Kafka security settings",
    ),
    (("AuthorizationException",), "the broker denied access ({detail}); check the ACLs for this job's user"),
]

# Failures that go away by themselves: the query is restarted from its checkpoint.
_TRANSIENT = (
    "TimeoutException",
    "KafkaTimeoutError",
    "timed out",
    "Timed out",
    "NetworkException",
    "DisconnectException",
    "NotLeaderOrFollower",
    "LeaderNotAvailable",
    "UnknownTopicOrPartition",
    "BrokerNotAvailable",
    "Broker may not be available",
    "NotEnoughReplicas",
    "CoordinatorNotAvailable",
    "RetriableException",
    "Connection refused",
    "Connection reset",
    "KafkaStorageException",
    "NotCoordinator",
    "UnknownLeaderEpoch",
    "FencedLeaderEpoch",
)


def error_text(error) -> str:
    """The message of a (py4j-captured) error with its JVM trace, for matching."""
    parts = [str(getattr(error, "desc", "") or ""), str(getattr(error, "stackTrace", "") or ""), str(error)]
    cause = getattr(error, "cause", None)
    if cause is not None:
        parts.append(str(cause))
    return "\n".join(parts)


def first_line(error) -> str:
    """The line that says what failed: an output topic's line whole (also from inside a JVM
    error), else the error's first line, cut at 300 characters."""
    text = str(getattr(error, "desc", None) or error).strip()
    if isinstance(error, OutputWriteError):
        return text
    output = _OUTPUT.search(text)
    if output:
        return output.group(2).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def classify_failure(error, config: AggregatorConfig) -> str | None:
    """None when a restart can heal the failure, else the one line that ends the job."""
    if isinstance(error, OutputRefused):
        return str(error)
    if isinstance(error, OutputRetriable):
        return None
    text = error_text(error)
    output = _OUTPUT.search(text)
    if output:
        return output.group(2).strip() if output.group(1) == OutputRefused.__name__ else None
    for markers, message in _FATAL:
        if any(m in text for m in markers):
            return message.format(checkpoint=config.checkpoint_dir, topic=config.topic, detail=first_line(error))
    if any(m in text for m in _TRANSIENT):
        return None
    return f"the query failed: {first_line(error)} (not a failure a restart heals, so the job stops)"
