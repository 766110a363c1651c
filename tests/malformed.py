"""Malformed Kafka message values, each with the start of the reason the job must give.
Shared by the static transformation tests and the end-to-end dead-letter test."""

import json
import time

_NOW = int(time.time())
VALID = {"order_id": "o-1", "customer_id": 5, "furniture": "Desk", "color": "red", "price": 1000, "ts": 1_700_000_000}


def _event(**overrides) -> bytes:
    fields = {**VALID, **overrides}
    return json.dumps({k: v for k, v in fields.items() if v is not _MISSING}).encode()


_MISSING = object()

MALFORMED: list[tuple[bytes | None, str]] = [
    (None, "null message value"),
    (b"\xff\xfe\xfa", "value is not valid UTF-8"),
    (b'{"price": "\xc3\x28"}', "value is not valid UTF-8"),
    (b"", "value is not valid JSON"),
    (b"not json", "value is not valid JSON"),
    (b'{"order_id": "o-1", "price": 1', "value is not valid JSON"),
    (b'{"order_id": "o", "price": NaN}', "value is not valid JSON"),
    (b'{"order_id": "o", "price": Infinity}', "value is not valid JSON"),
    (b'{"a": 1, "a": 2}', "value is not valid JSON"),
    (b"null", "value is not a JSON object"),
    (b"[1, 2, 3]", "value is not a JSON object"),
    (b'"a string"', "value is not a JSON object"),
    (b"42", "value is not a JSON object"),
    (b"{}", "missing field order_id"),
    (_event(order_id=_MISSING), "missing field order_id"),
    (_event(customer_id=_MISSING), "missing field customer_id"),
    (_event(furniture=_MISSING), "missing field furniture"),
    (_event(color=_MISSING), "missing field color"),
    (_event(price=_MISSING), "missing field price"),
    (_event(ts=_MISSING), "missing field ts"),
    (_event(order_id=123), "order_id must be a string"),
    (_event(order_id=""), "order_id is empty"),
    (_event(customer_id="5"), "customer_id must be an integer"),
    (_event(customer_id=5.5), "customer_id must be an integer"),
    (_event(customer_id=0), "customer_id must be a positive integer"),
    (_event(customer_id=-3), "customer_id must be a positive integer"),
    (_event(furniture="Lamp"), "furniture must be one of"),
    (_event(furniture=None), "furniture must be a string"),
    (_event(color=7), "color must be a string"),
    (_event(price="1000"), "price must be an integer"),
    (_event(price=12.5), "price must be an integer"),
    (_event(price=1000.0), "price must be an integer"),
    (_event(price=1e3), "price must be an integer"),
    (_event(price=True), "price must be an integer"),
    (_event(price=None), "price must be an integer"),
    (_event(price=[1000]), "price must be an integer"),
    (_event(price=0), "price must be > 0"),
    (_event(price=-100), "price must be > 0"),
    (_event(price=150_001), "price must be <= 150000"),
    (_event(price=10**30), "price must be an integer"),
    (_event(ts="1700000000"), "ts must be a number"),
    (_event(ts=True), "ts must be a number"),
    (_event(ts=946_684_799), "ts is before 2000-01-01"),
    (_event(ts=-1), "ts is before 2000-01-01"),
    (_event(ts=4_102_444_800), "ts is more than 300 seconds ahead of the processing time"),
    (_event(ts=_NOW + 23 * 3600), "ts is more than 300 seconds ahead of the processing time"),
    (_event(ts=1e300), "ts is more than 300 seconds ahead of the processing time"),
    # Exactly one JSON object: Spark's parsers stop after the first value, json.loads does not.
    (_event() + b"}", "value has content after the JSON object"),
    (_event() + b" x", "value has content after the JSON object"),
    (_event() + _event(order_id="o-2"), "value has content after the JSON object"),
    (_event() + b"\n" + _event(order_id="o-3"), "value has content after the JSON object"),
    (_event() + b"]", "value has content after the JSON object"),
    (_event() + b' "s"', "value has content after the JSON object"),
    (_event() + b"\x0c", "value has content after the JSON object"),  # form feed is no JSON whitespace
    (_event(extra={"a": [1, {"b": 2}]}) + b"}", "value has content after the JSON object"),
    (_event(extra={"a": [1]}) + b" 0", "value has content after the JSON object"),
    (_event(order_id='}{"') + b"{}", "value has content after the JSON object"),
    (b'{"a": ' * 10_000 + b"1" + b"}" * 10_000, "value is nested too deeply (more than 1000 levels)"),
    (b"[" * 10_000 + b"]" * 10_000, "value is nested too deeply (more than 1000 levels)"),
    (_event(color="\ud800"), "value has an invalid Unicode escape (a lone surrogate)"),
    (_event(color="a\udc00"), "value has an invalid Unicode escape (a lone surrogate)"),
]

# Valid, though unusual: whitespace around the value, strings holding brackets, quotes and
# escapes, nested extra fields, a surrogate pair.
VALID_UNUSUAL: list[bytes] = [
    b"  \t\r\n" + _event(order_id="ws") + b" \n\t\r ",
    _event(order_id='}{"]["\\', color="{}"),
    _event(order_id="nested", extra={"a": [1, {"b": [2, "}"]}], "c": {}}),
    _event(order_id="pair", color="\ud83d\ude00"),
    json.dumps({**VALID, "order_id": "pretty"}, indent=2).encode(),
]

# Values in the producer's wire form (compact, fields in order): the job's fast path reads
# them (transform.parse_events). Each is checked to get the same reason both ways.
_compact = lambda **kw: json.dumps({**VALID, **kw}, separators=(",", ":")).encode()  # noqa: E731
WIRE_FORM: list[bytes] = [
    _compact(),
    _compact(order_id=""),
    _compact(customer_id=0),
    _compact(customer_id=-5),
    _compact(customer_id=123_456_789_012_345_678),  # 18 digits: the fast path
    _compact(customer_id=1_234_567_890_123_456_789),  # 19 digits: the full checks
    _compact(price=150_001),
    _compact(price=0),
    _compact(furniture="Lamp"),
    _compact(ts=_NOW + 10_000),
    _compact(ts=946_684_799),
    _compact(ts=1_700_000_000.5),
    _compact(ts=1e20),
    _compact(color='a,"b":c'),  # an escaped quote: the full checks
    _compact(color="é"),  # not ASCII: the full checks
    _compact(color="a,b:c}{"),
    b'{"order_id":"o","customer_id":012,"furniture":"Desk","color":"r","price":5,"ts":1700000000}',
    b'{"order_id":"o","customer_id":1,"furniture":"Desk","color":"r","price":5,"ts":1700000000.}',
    b'{"order_id":"o","customer_id":1,"furniture":"Desk","color":"r","price":5,"ts":1700000000}x',
    b'{"order_id":"o","customer_id":1,"furniture":"Desk","color":"r","price":5,"ts":-1700000000}',
    b'{"order_id":"o\tx","customer_id":1,"furniture":"Desk","color":"r","price":5,"ts":1700000000}',
    b'{"customer_id":1,"order_id":"o","furniture":"Desk","color":"r","price":5,"ts":1700000000}',
    _compact() + b"\n",  # whitespace after the object: the full checks
    b'{"order_id":"o","customer_id":-0,"furniture":"Desk","color":"r","price":5,"ts":1700000000}',
    b'{"order_id":"o","customer_id":1,"furniture":"Desk","color":"r","price":5,"ts":1700000000.12345678901234567}',
    b'{"order_id":"o","customer_id":1,"furniture":"Desk","color":"r","price":5,"ts":1700000000.123456789012345678}',
    b'{"order_id":"o","customer_id":1,"furniture":"Desk","color":"r","price":5,"ts":1700000000',
]


def each_beside_a_valid_event(t0: float, step_s: int) -> tuple[list[dict], list[tuple[bytes | None, int]]]:
    """Every MALFORMED payload with a valid event before it (ts `t0 + step_s * i`, its own
    price and order id): the valid events, and (value, partition) pairs for 3 partitions,
    each payload on the partition after its valid event's."""
    valid, values = [], []
    for i, (payload, _) in enumerate(MALFORMED):
        good = {**VALID, "order_id": f"v{i}", "price": 100 + i, "ts": t0 + step_s * i}
        valid.append(good)
        values += [(json.dumps(good).encode(), i % 3), (payload, (i + 1) % 3)]
    return valid, values
