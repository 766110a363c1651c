"""The values of the command lines' options and of the settings, each checked by a function
argparse calls with the text (`type=`): it returns the value, or raises
argparse.ArgumentTypeError with the line the user reads."""

from __future__ import annotations

import argparse
import json
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .events import FIELDS


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


# Kafka's rule for topic names (kafka.common.internals.Topic): 1-249 of these characters.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def topic_name(text: str) -> str:
    if not _TOPIC_NAME.fullmatch(text) or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"invalid Kafka topic name {text!r}: use 1-249 of the characters a-z A-Z 0-9 . _ -")
    return text


def optional_topic_name(text: str) -> str:
    """A topic name, or '' to turn the feature off."""
    return text and topic_name(text)


# Spark's interval strings, as window, watermark and trigger take them: "10 minutes", "1 hour 30 minutes".
_INTERVAL_UNITS_S = {
    "week": 604800.0,
    "day": 86400.0,
    "hour": 3600.0,
    "minute": 60.0,
    "second": 1.0,
    "millisecond": 1e-3,
    "microsecond": 1e-6,
}
_INTERVAL_PART = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*(" + "|".join(_INTERVAL_UNITS_S) + r")s?\b", re.IGNORECASE)


def interval_seconds(text: str) -> float:
    """Seconds in a Spark interval string; ArgumentTypeError when Spark would not read it."""
    body = re.sub(r"^\s*interval\s+", "", text, flags=re.IGNORECASE).strip()
    total, pos = 0.0, 0
    while pos < len(body):
        match = _INTERVAL_PART.match(body, pos)
        if not match:
            break
        total += float(match.group(1)) * _INTERVAL_UNITS_S[match.group(2).lower()]
        pos = match.end()
    if not body or pos < len(body.rstrip()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write a number and a unit, e.g. '10 minutes', '30 seconds', '1 hour'"
        )
    return total


def _interval(minimum_s: float, strict: bool):
    def parse(text: str) -> str:
        seconds = interval_seconds(text)
        if seconds < minimum_s or (strict and seconds == minimum_s):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'more than' if strict else 'at least'} {minimum_s:g} seconds")
        return text

    parse.__name__ = "duration"
    return parse


positive_interval = _interval(0, strict=True)
non_negative_interval = _interval(0, strict=False)


def optional_interval(text: str) -> str:
    return positive_interval(text) if text.strip() else ""


# Event fields a window may be grouped by (transform.aggregate_windows): every field but the
# price (what is summed), the time (what makes the window) and the order id (one per event).
GROUP_FIELDS = tuple(f.name for f in FIELDS if f.name not in ("price", "ts", "order_id"))
STATE_STORES = ("hdfs", "rocksdb")


def group_fields(text: str) -> tuple[str, ...]:
    fields = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in fields if f not in GROUP_FIELDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown field {', '.join(map(repr, unknown))}: the fields are {', '.join(GROUP_FIELDS)}")
    if len(set(fields)) != len(fields):
        raise argparse.ArgumentTypeError(f"{text!r} names a field twice")
    return fields


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


_MEMORY_SIZE = re.compile(r"[1-9][0-9]*[kmgt]", re.IGNORECASE)


def memory_size(text: str) -> str:
    """A JVM memory size as Spark's spark.driver.memory takes it: a number and k, m, g or t."""
    if not _MEMORY_SIZE.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a memory size: write a number and a unit, e.g. 512m or 2g")
    return text.strip()


# Spark's master URLs: local, local[N], local[*], local[N,F] (N threads, F task failures), a standalone
# master or several (spark://HOST:PORT,HOST:PORT), Kubernetes (k8s://URL) and yarn.
_HOST_PORT = r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}"
_MASTER_URL = re.compile(rf"local(?:\[(?:\*|[1-9][0-9]*)(?:\s*,\s*[0-9]+)?\])?|spark://{_HOST_PORT}(?:,{_HOST_PORT})*|k8s://\S+|yarn")


def master_url(text: str) -> str:
    ports = re.findall(r":([0-9]+)(?=,|$)", text) if text.startswith("spark://") else []
    if not _MASTER_URL.fullmatch(text) or not all(0 < int(port) < 65536 for port in ports):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Spark master URL: use local, local[N], local[*], local[N,F], spark://HOST:PORT[,HOST:PORT...],"
            " k8s://URL or yarn"
        )
    return text


def starting_offsets(text: str) -> str:
    """earliest, latest, or the JSON Spark's Kafka source takes: {"topic":{"0":23,"1":-2}}, every partition's
    offset (-2: the earliest, -1: the latest)."""
    if text.strip().lower() in ("earliest", "latest"):
        return text
    try:
        offsets = json.loads(text)
    except ValueError:
        offsets = None
    if not (isinstance(offsets, dict) and offsets and all(_partition_offsets(v) for v in offsets.values())):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a starting offset: use earliest, latest or JSON such as "
            '{"topic":{"0":23,"1":-2}} (partition: offset; -2 the earliest, -1 the latest)'
        )
    return text


def _partition_offsets(value) -> bool:
    """{"0": 23, "1": -2}: partition numbers and offsets from -2 on (JSON's true and false are not offsets)."""
    if not isinstance(value, dict) or not value:
        return False
    return all(re.fullmatch(r"[0-9]+", p) and isinstance(o, int) and not isinstance(o, bool) and o >= -2 for p, o in value.items())


# An offset as Spark's session time zone takes it: +01:00, -5, +0100, UTC+01:00, GMT-3
_UTC_OFFSET = re.compile(r"(?:UTC|GMT)?([+-])([0-9]{1,2})(?::?([0-9]{2}))?")


def session_timezone(text: str) -> str:
    """A zone both Spark and the console sink (zoneinfo) read: a zone zoneinfo knows, or an offset of
    whole hours, given as its zone (UTC, Z and +00:00 as UTC, +01:00 as Etc/GMT-1, whose sign is POSIX's)."""
    offset = _UTC_OFFSET.fullmatch(text)
    if offset:
        sign, hours, minutes = offset[1], int(offset[2]), int(offset[3] or 0)
        if minutes or hours > (14 if sign == "+" else 12):
            raise argparse.ArgumentTypeError(f"no time zone has the offset {text!r}: name the zone instead, e.g. Asia/Kolkata for +05:30")
        return f"Etc/GMT{'-' if sign == '+' else '+'}{hours}" if hours else "UTC"
    if text in ("UTC", "Z"):
        return "UTC"  # without a look-up: also where zoneinfo has no data
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise argparse.ArgumentTypeError(
            f"unknown time zone {text!r}: use a zone name such as UTC or Europe/Paris, or an offset such as +01:00"
        ) from None
    return text
