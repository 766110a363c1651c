"""Pure DataFrame transformations: raw Kafka rows -> validated events -> windowed totals.

No session is created and no I/O happens here, so every function works the same on a
streaming DataFrame and on a static one built in a test. What the job computes is
`aggregate_windows`: Spark's own event-time aggregation, in a few lines.

A value in the producer's wire form takes a fast path: the job's wire parser
(jvm/src/purchase_analytics/WireEvent.java, registered as WIRE_EVENT_FUNCTION by
spark_session.py) recognises it and reads its fields in one scan of its bytes, and only the
value rules are left (see `parse_events`). Every other value is read twice, by two parsers
with different jobs:
- Spark's VARIANT (`try_parse_json`) keeps every JSON value's own type, so `"price": "100"`,
  `12.5`, `true` and `1e3` are told apart from `100` (a `from_json` schema would coerce them
  or null them silently). It decides validity and gives the reason.
- `from_json` with the event schema reads the values: per-field `try_variant_get` builds a
  cast for every value and was 61% of the job's CPU in the benchmark's profile.
An event whose whole VARIANT schema is exactly the canonical one skips the per-field type
checks (one string comparison instead of six lookups); any other value takes the per-field path.
"""

from __future__ import annotations

import string

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from .events import DEFAULT_MAX_FUTURE_S, FIELD_NAMES, FIELDS, MAX_NESTING_DEPTH, ValueRule, value_rules

# The event's columns after parsing: its fields, with `ts` (epoch seconds) as `event_time`.
EVENT_COLUMNS = tuple(f.name for f in FIELDS if f.name != "ts") + ("event_time",)
# Columns of a raw Kafka row that travel with an invalid message to the dead-letter topic.
SOURCE_COLUMNS = ("topic", "partition", "offset")

# How `from_json` reads the values once their JSON types are known to be right.
EVENT_SCHEMA = ", ".join(f"{f.name} {f.spark_type}" for f in FIELDS)
# The SQL function of the wire parser (WireEvent.java): the event as EVENT_SCHEMA's struct
# for a value in the wire form (events.WIRE_PATTERN), NULL for any other value.
WIRE_EVENT_FUNCTION = "purchase_wire_event"


def _canonical_schemas() -> tuple[tuple[str, ...], str]:
    """schema_of_variant of a valid event in the wire form with no extra field (keys sorted,
    integers as BIGINT): plain strings to compare with, plus one regex for DECIMAL(p,s)
    types, whose precision varies."""
    exact = [""]
    pattern = ""
    for f in sorted(FIELDS, key=lambda f: f.name):
        exact = [f"{done}, {f.name}: {t}" if done else f"{f.name}: {t}" for done in exact for t in f.canonical if t != "DECIMAL"]
        types = "|".join(t if t != "DECIMAL" else r"DECIMAL\(\d+,\d+\)" for t in f.canonical)
        pattern += (", " if pattern else "") + f"{f.name}: (?:{types})"
    return tuple(f"OBJECT<{e}>" for e in exact), f"^OBJECT<{pattern}>$"


CANONICAL_SCHEMAS, CANONICAL_SCHEMA_PATTERN = _canonical_schemas()


def _field_type(variant: Column, name: str) -> Column:
    """The JSON type of one field (e.g. BIGINT, STRING, DECIMAL(3,1), VOID for null), or NULL when absent."""
    return F.schema_of_variant(F.try_variant_get(variant, f"$.{name}", "variant"))


def _ascii_lower(text: Column) -> Column:
    """`lower` for VARIANT type names, which are ASCII: Spark's `lower` loads ICU's case
    tables on first use, a second of CPU in every job for a few rejection reasons."""
    return F.translate(text, string.ascii_uppercase, string.ascii_lowercase)


def _type_is(type_col: Column, allowed: tuple[str, ...]) -> Column:
    return F.regexp_extract(type_col, r"^([A-Z]+)", 1).isin(list(allowed))


_JSON_SPACE = "[ \\t\\n\\r]*"  # the only whitespace JSON allows around a value
# A high surrogate escape not followed by a low one, or a low one not preceded by a high one.
_LONE_SURROGATE = (
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _skeleton(text: Column) -> Column:
    """The text with every string emptied (`""`), so only JSON's structure is left. Escapes
    become `x` first, so a quote inside a string cannot end it early. Both patterns are
    single character classes: Java's regex engine scans them without recursion, even in
    a 1 MiB value."""
    unescaped = F.when(text.contains("\\"), F.regexp_replace(text, r"\\.", "x")).otherwise(text)
    return F.regexp_replace(unescaped, r'"[^"]*"', '""')


def _bracket_walk(skeleton: Column) -> Column:
    """Walk the brackets of a skeleton: its deepest nesting, how often the depth came back
    to 0 (once for a single value) and whether a bracket closed that was never opened."""
    brackets = F.split(F.regexp_replace(skeleton, r"[^\[\]{}]", ""), "")

    def step(acc: Column, char: Column) -> Column:
        delta = F.when(char.isin("{", "["), 1).when(char.isin("}", "]"), -1).otherwise(0)
        depth = acc["depth"] + delta
        return F.struct(
            depth.alias("depth"),
            F.greatest(acc["max_depth"], depth).alias("max_depth"),
            (acc["closed"] + F.when((delta != 0) & (depth == 0), 1).otherwise(0)).alias("closed"),
            (acc["unbalanced"] | (depth < 0)).alias("unbalanced"),
        )

    start = F.struct(F.lit(0).alias("depth"), F.lit(0).alias("max_depth"), F.lit(0).alias("closed"), F.lit(False).alias("unbalanced"))
    return F.aggregate(brackets, start, step)


def _is_flat(skeleton: Column) -> Column:
    """A skeleton of one object with no object or array inside (every valid event on the wire)."""
    return skeleton.rlike(f"^{_JSON_SPACE}\\{{[^{{}}\\[\\]]*\\}}{_JSON_SPACE}$")


def _trailing_content(skeleton: Column, walk: Column) -> Column:
    """True when something other than whitespace follows the first JSON object. A flat
    object is settled by one regex; only a value with nested objects or arrays needs the
    walk of its brackets."""
    single = (walk["closed"] == 1) & ~walk["unbalanced"] & skeleton.rlike(f"[}}\\]]{_JSON_SPACE}$")
    return F.when(_is_flat(skeleton), F.lit(False)).otherwise(~single)


def _first(checks: list[tuple[Column, Column]]) -> Column:
    """CASE WHEN c1 THEN r1 WHEN c2 THEN r2 ... END: the first broken rule's reason, or NULL."""
    reason = F.when(*checks[0])
    for condition, text in checks[1:]:
        reason = reason.when(condition, text)
    return reason


def _rejection_reason(
    raw_text: Column,
    variant: Column,
    schema: Column,
    skeleton: Column,
    walk: Column,
    fields: dict[str, Column],
    rules: tuple[ValueRule, ...],
) -> Column:
    """The first rule a message breaks, or NULL for a valid event. `coalesce` and `CASE`
    stop at their first hit, so each group of checks runs only when the ones before pass,
    and the per-field type checks only for values whose schema is not the canonical one.
    `skeleton` is _skeleton's and `walk` _bracket_walk's of the value (see parse_events)."""
    whole_value = _first(
        [
            (raw_text.isNull(), F.lit("null message value")),
            (~F.is_valid_utf8(raw_text), F.lit("value is not valid UTF-8")),
            (
                variant.isNull() & (walk["max_depth"] > MAX_NESTING_DEPTH),
                F.lit(f"value is nested too deeply (more than {MAX_NESTING_DEPTH} levels)"),
            ),
            (variant.isNull() & raw_text.rlike(_LONE_SURROGATE), F.lit("value has an invalid Unicode escape (a lone surrogate)")),
            (variant.isNull(), F.lit("value is not valid JSON")),
            (~schema.startswith("OBJECT"), F.lit("value is not a JSON object")),
            (_trailing_content(skeleton, walk), F.lit("value has content after the JSON object")),
        ]
    )
    type_checks = []
    for f in FIELDS:
        json_type = _field_type(variant, f.name)
        type_checks.append((json_type.isNull(), F.lit(f"missing field {f.name}")))
        type_checks.append(
            (~_type_is(json_type, f.json_types), F.concat(F.lit(f"{f.name} must be {f.described}, got "), _ascii_lower(json_type)))
        )
    canonical = schema.isin(list(CANONICAL_SCHEMAS)) | schema.rlike(CANONICAL_SCHEMA_PATTERN)
    field_types = F.when(~canonical, _first(type_checks))
    return F.coalesce(whole_value, field_types, _value_reason(fields, rules))


def _value_reason(fields: dict[str, Column], rules: tuple[ValueRule, ...]) -> Column:
    """The first of the value `rules` (events.value_rules) an event with the right JSON
    types breaks. Both parsers must agree first (a key could imitate the schema text)."""
    return _first(
        [(value.isNull(), F.lit(f"field {name} could not be read")) for name, value in fields.items()]
        + [(_breaks(rule, fields[rule.field]), F.lit(rule.reason)) for rule in rules]
    )


def _split_timed_rule(rules: tuple[ValueRule, ...]) -> tuple[tuple[ValueRule, ...], ValueRule]:
    """The value rules less the one on the processing time, which comes last, and that one."""
    *untimed, timed = rules
    assert timed.kind == "at_most_ahead" and all(r.kind != timed.kind for r in untimed), "the rule on the processing time comes last"
    return tuple(untimed), timed


# The processing time, as epoch seconds, in a column of its own (parse_events).
_NOW_S = "_now_s"


def _processing_time_s() -> Column:
    """unix_timestamp(current_timestamp()). In a streaming query current_timestamp() is the
    micro-batch's own time, kept in Spark's offset log: a batch that runs again after a
    crash judges every event alike. Spark writes that time into its generated code as a
    constant, so every operator it reaches would be compiled again in every batch; behind a
    higher-order function (which Spark evaluates outside its generated code, here over an
    empty array) the code stays the same from batch to batch and is compiled once."""
    return F.aggregate(F.array().cast("array<int>"), F.unix_timestamp(F.current_timestamp()), lambda now, _: now)


def _breaks(rule: ValueRule, value: Column) -> Column:
    """A value rule (events.py) as a Spark condition that is true when the value breaks it."""
    if rule.kind == "non_empty":
        return value == ""  # its byte count, not F.length: counting its characters was 9% of the job's task time
    if rule.kind == "at_least":
        return value < rule.limit
    if rule.kind == "at_most":
        return value > rule.limit
    if rule.kind == "one_of":
        return ~value.isin(list(rule.limit))
    if rule.kind == "finite":
        return F.isnan(value) | F.abs(value).eqNullSafe(float("inf"))
    if rule.kind == "at_most_ahead":
        return _ahead(value, F.col(_NOW_S) + rule.limit)
    raise ValueError(f"unknown rule kind {rule.kind!r}")


# `ts > latest_s` is compared as a DECIMAL: `ts` may be a double beyond a long's range, and
# 18 digits keep the decimal a long inside; a `ts` too large for them is decided by its sign.
_LATEST_TYPE = "decimal(18,0)"
_LATEST_RANGE = 1e17


def _ahead(ts: Column, latest_s: Column) -> Column:
    """`ts > latest_s` (epoch seconds, latest_s a whole number): `ts` is finite here, and
    `ts > n` is `ceil(ts) > n` for a whole number n."""
    in_range = F.abs(ts) < _LATEST_RANGE
    return F.when(in_range, F.ceil(ts).cast(_LATEST_TYPE) > latest_s.cast(_LATEST_TYPE)).otherwise(ts > 0)


def has_wire_parser(spark: SparkSession) -> bool:
    return spark.catalog.functionExists(WIRE_EVENT_FUNCTION)


def parse_events(raw: DataFrame, price_max: int, max_future_s: int = DEFAULT_MAX_FUTURE_S, fast_path: bool = True) -> DataFrame:
    """Kafka rows (binary `value`, plus topic/partition/offset when present) -> one row per
    message with the typed event columns, `rejection_reason` (NULL for a valid event), the
    source columns, and `value`: the original bytes of a rejected message (all the
    dead-letter topic needs), NULL for a valid event.

    A value in the producer's wire form (events.WIRE_PATTERN) is recognised and read by the
    wire parser in one scan of its bytes; it is JSON with the right types by construction,
    so only the value rules are checked, and unless it breaks one its bytes are dropped
    as soon as they are checked. Only other values are parsed into a VARIANT for the full checks.
    `fast_path=False`, or a session without the wire parser, sends every value the full
    way (the tests compare both)."""
    source = [F.col(c) for c in SOURCE_COLUMNS if c in raw.columns]
    if fast_path and has_wire_parser(raw.sparkSession):
        wire = F.call_function(WIRE_EVENT_FUNCTION, F.col("value"))
    else:
        wire = F.lit(None).cast(f"struct<{EVENT_SCHEMA}>")
    # The wire parser and its fields run in Spark's generated code, fused with the Kafka
    # scan. The full checks use expressions that Spark cannot fuse (VARIANT, higher-order
    # functions), so each of their projections copies every row it passes on: after the
    # first of them, which also holds the processing time (_processing_time_s) and so
    # settles the wire form's value rules, a valid event in the wire form is a few
    # numbers, not its bytes.
    read = raw.select(F.col("value"), *source, wire.alias("_w"))
    on_wire = read.select(
        F.col("value"), *source, F.col("_w").isNotNull().alias("_wire"), *[F.col("_w")[f.name].alias(f.name) for f in FIELDS]
    )
    rules = value_rules(price_max, max_future_s)
    untimed, timed = _split_timed_rule(rules)
    wire_fields = {name: F.col(name) for name in FIELD_NAMES}
    settled = on_wire.withColumn("_reason", F.when(F.col("_wire"), _value_reason(wire_fields, untimed)))
    # The full checks, for every other value. One projection per step, so that each
    # expensive expression runs once per row and only for the rows that need it: Spark keeps
    # a projection apart when merging it into the next would repeat a costly expression.
    full = ~F.col("_wire")
    text = F.when(full, F.col("value").cast("string")).alias("_text")
    parsed = settled.select(
        "*",
        _processing_time_s().alias(_NOW_S),
        text,
        F.when(full, F.from_json(text, EVENT_SCHEMA)).alias("_e"),
        F.when(full, F.try_parse_json(F.when(F.is_valid_utf8(text), text))).alias("_v"),
    )
    on_time = F.when(_breaks(timed, F.col(timed.field)), F.lit(timed.reason))
    parsed = parsed.withColumn("_reason", F.when(F.col("_wire"), F.coalesce(F.col("_reason"), on_time)))
    parsed = parsed.withColumn("value", F.when(full | F.col("_reason").isNotNull(), F.col("value")))
    parsed = parsed.withColumn("_schema", F.schema_of_variant("_v"))
    # The bracket walk is a higher-order function, which Spark evaluates row by row outside
    # its generated code, and an operator that holds one is left out of whole-stage code
    # generation: on its own, only this small projection is, while the rejection reason
    # below is generated once per batch with the rest of its stage. The walk is needed for a
    # value that is not JSON (its depth) or not a flat object (what follows it).
    parsed = parsed.withColumn("_skeleton", F.when(full, _skeleton(F.col("_text"))))
    needs_walk = full & (F.col("_v").isNull() | ~_is_flat(F.col("_skeleton")))
    parsed = parsed.withColumn("_walk", F.when(needs_walk, _bracket_walk(F.col("_skeleton"))))
    read_fully = {f.name: F.col("_e")[f.name] for f in FIELDS}
    fields = {name: F.when(F.col("_wire"), F.col(name)).otherwise(read_fully[name]) for name in FIELD_NAMES}
    reason = F.when(F.col("_wire"), F.col("_reason")).otherwise(
        _rejection_reason(F.col("_text"), F.col("_v"), F.col("_schema"), F.col("_skeleton"), F.col("_walk"), read_fully, rules)
    )
    checked = parsed.select(
        F.col("value"),
        *source,
        *[fields[name].alias(name) for name in EVENT_COLUMNS if name != "event_time"],
        F.timestamp_seconds(fields["ts"]).alias("event_time"),
        reason.alias("rejection_reason"),
    )
    return checked.withColumn("value", F.when(F.col("rejection_reason").isNotNull(), F.col("value")))


def aggregate_windows(
    events: DataFrame,
    window_duration: str,
    watermark_delay: str,
    slide_duration: str | None = None,
    group_by: tuple[str, ...] = (),
) -> DataFrame:
    """What the job computes: Spark's own event-time aggregation of the valid events. The
    watermark trails the latest event time by `watermark_delay`; a window is
    [start, start + window_duration), every `slide_duration` (tumbling when None); Spark's
    state store keeps the open windows, judges late rows and emits windows in update or
    append mode (the writer's output mode)."""
    return (
        events.withWatermark("event_time", watermark_delay)
        .groupBy(F.window("event_time", window_duration, slide_duration), *group_by)
        .agg(F.sum("price").alias("total_purchase"), F.count(F.lit(1)).alias("orders"))
        .select(F.col("window.start").alias("window_start"), F.col("window.end").alias("window_end"), *group_by, "total_purchase", "orders")
    )


def valid_events(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.col("rejection_reason").isNull()).select(*EVENT_COLUMNS)


def rejected_messages(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.col("rejection_reason").isNotNull())


def dead_letter_records(rejected: DataFrame, max_value_bytes: int) -> DataFrame:
    """Rejected messages in the dead-letter topic's form: the original bytes as the value,
    the reason and the source coordinates as headers, `topic-partition-offset` as the key.
    A value longer than `max_value_bytes` is cut to that size, with the headers
    `value_truncated` and `original_size`, so that one huge bad message cannot fail the
    dead-letter write (and the whole stream with it, at every restart)."""

    def header(name: str, col: Column) -> Column:
        return F.struct(F.lit(name).alias("key"), col.cast("string").cast("binary").alias("value"))

    size = F.octet_length("value")
    truncated = size > max_value_bytes
    headers = F.array(
        header("rejection_reason", F.col("rejection_reason")),
        header("source_topic", F.col("topic")),
        header("source_partition", F.col("partition")),
        header("source_offset", F.col("offset")),
        header("value_truncated", F.when(truncated, F.lit("true"))),
        header("original_size", F.when(truncated, size)),
    )
    return rejected.select(
        F.concat_ws("-", "topic", "partition", "offset").alias("key"),
        F.when(truncated, F.substring("value", 1, max_value_bytes)).otherwise(F.col("value")).alias("value"),
        F.filter(headers, lambda h: h["value"].isNotNull()).alias("headers"),
    )
