"""The purchase event: its fields, its wire form (JSON bytes) and what makes one valid.

The rules written here are enforced in the Spark job by `transform.parse_events`, which
builds its checks from these constants, so the README, the producer and the job agree.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from datetime import datetime, timezone

from .defaults import DEFAULTS

FURNITURE = ("Chair", "Table", "Desk", "Sofa", "Bed")
CUSTOMER_ID_MAX = 100  # the producer draws customer_id from 1..CUSTOMER_ID_MAX
PRICE_MIN = 100  # the producer draws price from PRICE_MIN..price_max
DEFAULT_PRICE_MAX = int(DEFAULTS["PRICE_MAX"])

# Valid event time: from 2000-01-01 (UTC) to a few minutes ahead of the processing time
# (EVENT_MAX_FUTURE_S). An event further ahead would move the watermark past every
# real event still to come, so it is dead-lettered instead of counted.
TS_MIN_EPOCH_S = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp())
DEFAULT_MAX_FUTURE_S = int(DEFAULTS["EVENT_MAX_FUTURE_S"])

# The value must be exactly one JSON object: whitespace may surround it, nothing else may
# follow it (Spark's parsers stop after the first value and would ignore the rest).
# Spark's JSON parser gives up beyond this depth; such a value is rejected with that reason.
MAX_NESTING_DEPTH = 1000

# JSON types as Spark's VARIANT reports them (schema_of_variant).
JSON_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT")
JSON_STRING_TYPES = ("STRING",)
# A JSON number with a fraction or exponent is DECIMAL(p,s) or DOUBLE in a VARIANT.
JSON_NUMBER_PREFIXES = ("TINYINT", "SMALLINT", "INT", "BIGINT", "DECIMAL", "DOUBLE", "FLOAT")


@dataclass(frozen=True)
class EventField:
    """One field of the event, as every part of the project sees it."""

    name: str
    json_types: tuple[str, ...]  # the VARIANT types it may have
    described: str  # what a rejection says it must be
    spark_type: str  # how `from_json` reads it (DDL)
    python_types: tuple[type, ...]  # the same JSON types, as json.loads gives them (a bool is no int)
    canonical: tuple[str, ...]  # its VARIANT type in the producer's wire form
    wire_format: str  # its printf format in the producer's wire form


# The one field table: the Spark schema, the canonical schema, the columns, the wire form
# and the Python validation are all derived from it.
FIELDS: tuple[EventField, ...] = (
    EventField("order_id", JSON_STRING_TYPES, "a string", "string", (str,), ("STRING",), '"%s"'),
    EventField("customer_id", JSON_INTEGER_TYPES, "an integer", "bigint", (int,), ("BIGINT",), "%d"),
    EventField("furniture", JSON_STRING_TYPES, "a string", "string", (str,), ("STRING",), '"%s"'),
    EventField("color", JSON_STRING_TYPES, "a string", "string", (str,), ("STRING",), '"%s"'),
    EventField("price", JSON_INTEGER_TYPES, "an integer", "bigint", (int,), ("BIGINT",), "%d"),
    EventField("ts", JSON_NUMBER_PREFIXES, "a number (epoch seconds)", "double", (int, float), ("BIGINT", "DOUBLE", "DECIMAL"), "%s"),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)


@dataclass(frozen=True)
class ValueRule:
    """A range rule on one field's value, in a small vocabulary that the Spark job
    (transform.py) and plain Python (`rejection_reason`) both interpret."""

    field: str
    kind: str  # non_empty | at_least | at_most | one_of | finite | at_most_ahead (seconds after processing time)
    limit: object
    reason: str


def value_rules(price_max: int, max_future_s: int) -> tuple[ValueRule, ...]:
    """The value rules, in the order they are checked; the first broken one is the reason."""
    return (
        ValueRule("order_id", "non_empty", None, "order_id is empty"),
        ValueRule("customer_id", "at_least", 1, "customer_id must be a positive integer"),
        ValueRule("furniture", "one_of", FURNITURE, f"furniture must be one of {', '.join(FURNITURE)}"),
        ValueRule("price", "at_least", 1, "price must be > 0"),
        ValueRule("price", "at_most", price_max, f"price must be <= {price_max}"),
        ValueRule("ts", "finite", None, "ts is not a finite number"),
        ValueRule("ts", "at_least", TS_MIN_EPOCH_S, "ts is before 2000-01-01"),
        ValueRule("ts", "at_most_ahead", max_future_s, f"ts is more than {max_future_s} seconds ahead of the processing time"),
    )


def _python_type_name(value) -> str:
    return {bool: "boolean", type(None): "void", str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def rejection_reason(event, price_max: int, max_future_s: int, now_s: float) -> str | None:
    """The job's field and value rules, in plain Python, for an already-parsed JSON value
    (the benchmark's baseline consumer uses it). None for a valid event."""
    if not isinstance(event, dict):
        return "value is not a JSON object"
    for f in FIELDS:
        if f.name not in event:
            return f"missing field {f.name}"
        value = event[f.name]
        if type(value) not in f.python_types:
            return f"{f.name} must be {f.described}, got {_python_type_name(value)}"
    for rule in value_rules(price_max, max_future_s):
        if _breaks(rule, event[rule.field], now_s):
            return rule.reason
    return None


class RejectedValue(ValueError):
    """A message value that is not exactly one JSON value by the job's rules; str() is the reason."""


def _no_duplicate_keys(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise RejectedValue("value is not valid JSON")  # duplicate keys, as Spark's parse_json
    return obj


def _no_constant(name: str):
    raise RejectedValue("value is not valid JSON")  # NaN and Infinity are not JSON


_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)


def parse_json_value(raw: bytes | None):
    """A message value parsed the way the Spark job reads it (`transform.parse_events`):
    strict UTF-8, exactly one JSON value with nothing but JSON whitespace after it, no
    duplicate keys, no NaN or Infinity, no lone surrogate escapes, at most
    MAX_NESTING_DEPTH levels. Raises RejectedValue with the job's reason otherwise."""
    if raw is None:
        raise RejectedValue("null message value")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RejectedValue("value is not valid UTF-8") from None
    try:
        if text.count("[") + text.count("{") > MAX_NESTING_DEPTH // 4:
            value = _parse_nested(text)
        else:
            value = _STRICT_JSON.decode(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            raise RejectedValue("value has content after the JSON object") from None
        raise RejectedValue("value is not valid JSON") from None
    if "\\u" in text and _has_lone_surrogate(value):
        raise RejectedValue("value has an invalid Unicode escape (a lone surrogate)")
    return value


def _parse_nested(text: str):
    """Deeply nested values: measured first, then parsed with room on the stack."""
    if _nesting_depth(text) > MAX_NESTING_DEPTH:
        raise RejectedValue(f"value is nested too deeply (more than {MAX_NESTING_DEPTH} levels)")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 2 * MAX_NESTING_DEPTH)
    try:
        return _STRICT_JSON.decode(text)
    finally:
        sys.setrecursionlimit(limit)


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _has_lone_surrogate(value) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _breaks(rule: ValueRule, value, now_s: float) -> bool:
    kind = rule.kind
    if kind == "non_empty":
        return value == ""
    if kind == "at_least":
        return value < rule.limit
    if kind == "at_most":
        return value > rule.limit
    if kind == "one_of":
        return value not in rule.limit
    if kind == "finite":
        return not math.isfinite(value)
    if kind == "at_most_ahead":
        return value > now_s + rule.limit
    raise ValueError(f"unknown rule kind {kind!r}")


@dataclass(frozen=True)
class PurchaseEvent:
    """An event as the producer makes it; its fields are FIELDS' names, in order."""

    order_id: str
    customer_id: int
    furniture: str
    color: str
    price: int
    ts: int  # event time, epoch seconds

    def to_json_bytes(self) -> bytes:
        return event_json_bytes(self.order_id, self.customer_id, self.furniture, self.color, self.price, self.ts)


# The wire form: every field has a known simple type, so printf formatting beats json.dumps
# by ~3x; colors and furniture come from fixed ASCII pools that need no escaping.
WIRE_FORMAT = "{" + ",".join(f'"{f.name}":{f.wire_format}' for f in FIELDS) + "}"


def event_json_bytes(*values) -> bytes:
    """The event's JSON bytes from its values in FIELDS' order."""
    return (WIRE_FORMAT % values).encode()


# The wire form as a pattern: the specification of the job's fast path, which the wire parser
# (jvm/src/purchase_analytics/WireEvent.java, called by transform.parse_events) implements in
# one scan of a value's bytes; the tests check that both accept the same values. The fields in
# FIELDS' order, no whitespace, strings of printable ASCII without quotes or escapes, integers
# of at most 18 digits (always within BIGINT) and plain decimals for `ts`. A value that
# matches is valid JSON with the right types, so only the value rules are left to check; any
# other value (whitespace, another key order, escapes, exponents, extra fields) takes the full
# checks. The same rules apply either way.
_WIRE_VALUE = {
    "string": '"[ !#-\\[\\]-~]*"',
    "bigint": "-?(?:0|[1-9][0-9]{0,17})",
    "double": "-?(?:0|[1-9][0-9]{0,17})(?:\\.[0-9]{1,17})?",
}
WIRE_PATTERN = "^\\{" + ",".join(f'"{f.name}":{_WIRE_VALUE[f.spark_type]}' for f in FIELDS) + "\\}$"


def window_start_s(ts: float, window_s: int) -> int:
    """Start of the tumbling window holding `ts`: an event on a boundary opens the later window."""
    return int(ts // window_s) * window_s
