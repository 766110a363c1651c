"""The purchase event: its fields, its wire form (JSON bytes) and what makes one valid.

The rules written here are enforced in the Spark job by `transform.parse_events`, which
builds its checks from these constants, so the README, the producer and the job agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

FURNITURE = ("Chair", "Table", "Desk", "Sofa", "Bed")
CUSTOMER_ID_MAX = 100  # the producer draws customer_id from 1..CUSTOMER_ID_MAX
PRICE_MIN = 100  # the producer draws price from PRICE_MIN..price_max
DEFAULT_PRICE_MAX = 150_000

# Valid event time: from 2000-01-01 (UTC) to a few minutes ahead of the processing time
# (EVENT_MAX_FUTURE_S in .env). An event further ahead would move the watermark past every
# real event still to come, so it is dead-lettered instead of counted.
TS_MIN_EPOCH_S = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp())
DEFAULT_MAX_FUTURE_S = 300

# The value must be exactly one JSON object: whitespace may surround it, nothing else may
# follow it (Spark's parsers stop after the first value and would ignore the rest).
# Spark's JSON parser gives up beyond this depth; such a value is rejected with that reason.
MAX_NESTING_DEPTH = 1000

# JSON types as Spark's VARIANT reports them (schema_of_variant), per field.
JSON_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT")
JSON_STRING_TYPES = ("STRING",)
# A JSON number with a fraction or exponent is DECIMAL(p,s) or DOUBLE in a VARIANT.
JSON_NUMBER_PREFIXES = ("TINYINT", "SMALLINT", "INT", "BIGINT", "DECIMAL", "DOUBLE", "FLOAT")

# field -> (VARIANT types it may have, what the reason says when it has another one)
FIELD_TYPES: dict[str, tuple[tuple[str, ...], str]] = {
    "order_id": (JSON_STRING_TYPES, "a string"),
    "customer_id": (JSON_INTEGER_TYPES, "an integer"),
    "furniture": (JSON_STRING_TYPES, "a string"),
    "color": (JSON_STRING_TYPES, "a string"),
    "price": (JSON_INTEGER_TYPES, "an integer"),
    "ts": (JSON_NUMBER_PREFIXES, "a number (epoch seconds)"),
}


@dataclass(frozen=True)
class PurchaseEvent:
    order_id: str
    customer_id: int
    furniture: str
    color: str
    price: int
    ts: int  # event time, epoch seconds

    def to_json_bytes(self) -> bytes:
        return event_json_bytes(self.order_id, self.customer_id, self.furniture, self.color, self.price, self.ts)


def event_json_bytes(order_id: str, customer_id: int, furniture: str, color: str, price: int, ts: int) -> bytes:
    """Wire form. Every field has a known simple type, so formatting beats json.dumps
    by ~3x; colors and furniture come from fixed ASCII pools that need no escaping."""
    return (
        f'{{"order_id":"{order_id}","customer_id":{customer_id},'
        f'"furniture":"{furniture}","color":"{color}",'
        f'"price":{price},"ts":{ts}}}'
    ).encode()


def window_start_s(ts: float, window_s: int) -> int:
    """Start of the tumbling window holding `ts`: an event on a boundary opens the later window."""
    return int(ts // window_s) * window_s
