"""Pure DataFrame transformations: raw Kafka rows -> validated events -> windowed totals.

No session is created and no I/O happens here, so every function works the same on a
streaming DataFrame and on a static one built in a test.

Validation goes through Spark's VARIANT type (`try_parse_json`), which keeps each JSON
value's own type: `"price": "100"`, `12.5`, `true` and `1e3` are told apart from `100`,
which a `from_json` schema would coerce or null silently. The rules come from `events`.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from .events import FIELD_TYPES, FURNITURE, TS_MAX_AHEAD_S, TS_MIN_EPOCH_S

EVENT_COLUMNS = ("order_id", "customer_id", "furniture", "color", "price", "event_time")
# Columns of a raw Kafka row that travel with an invalid message to the dead-letter topic.
SOURCE_COLUMNS = ("topic", "partition", "offset")


def _field_type(variant: Column, name: str) -> Column:
    """The JSON type of one field (e.g. BIGINT, STRING, DECIMAL(3,1), VOID for null), or NULL when absent."""
    return F.schema_of_variant(F.try_variant_get(variant, f"$.{name}", "variant"))


def _type_is(type_col: Column, allowed: tuple[str, ...]) -> Column:
    return F.regexp_extract(type_col, r"^([A-Z]+)", 1).isin(list(allowed))


def _typed_fields(variant: Column) -> dict[str, Column]:
    """Each field cast to its column type; NULL when absent or not castable."""
    return {
        "order_id": F.try_variant_get(variant, "$.order_id", "string"),
        "customer_id": F.try_variant_get(variant, "$.customer_id", "bigint"),
        "furniture": F.try_variant_get(variant, "$.furniture", "string"),
        "color": F.try_variant_get(variant, "$.color", "string"),
        "price": F.try_variant_get(variant, "$.price", "bigint"),
        "ts": F.try_variant_get(variant, "$.ts", "double"),
    }


def _rejection_reason(raw_text: Column, variant: Column, fields: dict[str, Column], price_max: int) -> Column:
    """The first rule a message breaks, or NULL for a valid event. A CASE evaluates only
    up to its first true branch, so the whole-value checks guard the per-field ones."""
    checks: list[tuple[Column, Column]] = [
        (raw_text.isNull(), F.lit("null message value")),
        (~F.is_valid_utf8(raw_text), F.lit("value is not valid UTF-8")),
        (variant.isNull(), F.lit("value is not valid JSON")),
        (~F.schema_of_variant(variant).startswith("OBJECT"), F.lit("value is not a JSON object")),
    ]
    for name, (allowed, described) in FIELD_TYPES.items():
        json_type = _field_type(variant, name)
        checks.append((json_type.isNull(), F.lit(f"missing field {name}")))
        checks.append((~_type_is(json_type, allowed), F.concat(F.lit(f"{name} must be {described}, got "), F.lower(json_type))))
    ts = fields["ts"]
    checks += [
        (F.length(fields["order_id"]) == 0, F.lit("order_id is empty")),
        (fields["customer_id"].isNull() | (fields["customer_id"] <= 0), F.lit("customer_id must be a positive integer")),
        (~fields["furniture"].isin(list(FURNITURE)), F.lit(f"furniture must be one of {', '.join(FURNITURE)}")),
        (fields["price"].isNull() | (fields["price"] <= 0), F.lit("price must be > 0")),
        (fields["price"] > price_max, F.lit(f"price must be <= {price_max}")),
        (ts.isNull() | F.isnan(ts), F.lit("ts is not a finite number")),
        (ts < TS_MIN_EPOCH_S, F.lit("ts is before 2000-01-01")),
        (ts > F.unix_timestamp(F.current_timestamp()) + TS_MAX_AHEAD_S, F.lit("ts is more than one day in the future")),
    ]
    reason = F.when(*checks[0])
    for condition, text in checks[1:]:
        reason = reason.when(condition, text)
    return reason


def parse_events(raw: DataFrame, price_max: int) -> DataFrame:
    """Kafka rows (binary `value`, plus topic/partition/offset when present) -> one row per
    message with the typed event columns and `rejection_reason` (NULL for a valid event)."""
    source = [F.col(c) for c in SOURCE_COLUMNS if c in raw.columns]
    text = F.col("value").cast("string")
    with_variant = raw.select(
        F.col("value"), *source, text.alias("_text"),
        F.try_parse_json(F.when(F.is_valid_utf8(text), text)).alias("_v"),
    )
    fields = _typed_fields(F.col("_v"))
    return with_variant.select(
        F.col("value"), *source,
        *[fields[name].alias(name) for name in ("order_id", "customer_id", "furniture", "color", "price")],
        F.timestamp_seconds(fields["ts"]).alias("event_time"),
        _rejection_reason(F.col("_text"), F.col("_v"), fields, price_max).alias("rejection_reason"),
    )


def valid_events(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.col("rejection_reason").isNull()).select(*EVENT_COLUMNS)


def rejected_messages(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.col("rejection_reason").isNotNull())


def aggregate_purchases(events: DataFrame, window_duration: str, watermark_delay: str) -> DataFrame:
    """Sum prices per tumbling event-time window. Windows are [start, end): an event exactly
    on a boundary belongs to the later window. The watermark bounds the state kept."""
    return (
        events.withWatermark("event_time", watermark_delay)
        .groupBy(F.window("event_time", window_duration).alias("window"))
        .agg(F.sum("price").alias("total_purchase"), F.count(F.lit(1)).alias("orders"))
        .select(
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            "total_purchase",
            "orders",
        )
    )
