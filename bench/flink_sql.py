"""The Flink SQL of the Flink peer, built from the job's one field table and rule list
(`events.FIELDS`, `events.value_rules`): no rule is typed twice. Pure string building,
testable without Flink."""

from __future__ import annotations

import sys

from purchase_analytics.events import FIELDS, ValueRule, value_rules

SQL_TYPES = {"string": "STRING", "bigint": "BIGINT", "double": "DOUBLE"}  # FIELDS' spark_type -> Flink SQL
SOURCE_TABLE = "purchases"
VALID_VIEW = "valid_purchases"


def interval(seconds: float) -> str:
    """A Flink SQL day-time interval literal, to the millisecond."""
    ms = round(seconds * 1000)
    days, ms = divmod(ms, 86_400_000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}' DAY TO SECOND(3)"


def _literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def rule_holds(rule: ValueRule) -> str:
    """A value rule as a SQL condition that is true when the value keeps it (NULL counts as broken)."""
    f, limit = f"`{rule.field}`", rule.limit
    if rule.kind == "non_empty":
        return f"{f} <> ''"
    if rule.kind == "at_least":
        return f"{f} >= {_literal(limit)}"
    if rule.kind == "at_most":
        return f"{f} <= {_literal(limit)}"
    if rule.kind == "one_of":
        return f"{f} IN ({', '.join(map(_literal, limit))})"
    if rule.kind == "finite":  # NaN compares false; the infinities are outside the range
        return f"{f} BETWEEN {-sys.float_info.max!r} AND {sys.float_info.max!r}"
    if rule.kind == "at_most_ahead":  # Spark's own form: unix_timestamp(current_timestamp()) + limit, per row
        return f"{f} <= UNIX_TIMESTAMP() + {int(limit)}"
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def valid_condition(price_max: int, max_future_s: int) -> str:
    """Every field present and not null (the JSON format gives NULL for a missing field),
    then every value rule."""
    present = [f"`{f.name}` IS NOT NULL" for f in FIELDS]
    return "\n    AND ".join(present + [rule_holds(r) for r in value_rules(price_max, max_future_s)])


def source_table_ddl(options: dict[str, str], watermark_s: float, valid: str) -> str:
    """The Kafka source. The rowtime is set only on valid rows, so only they move the
    watermark, as in the Spark job (a NULL watermark is skipped)."""
    columns = [f"`{f.name}` {SQL_TYPES[f.spark_type]}" for f in FIELDS]
    with_options = ",\n  ".join(f"{_literal(k)} = {_literal(v)}" for k, v in options.items())
    return f"""CREATE TEMPORARY TABLE {SOURCE_TABLE} (
  {", ".join(columns)},
  event_time AS CASE WHEN {valid} THEN TO_TIMESTAMP_LTZ(CAST(`ts` * 1000 AS BIGINT), 3) END,
  WATERMARK FOR event_time AS event_time - {interval(watermark_s)}
) WITH (
  {with_options}
)"""


def valid_view_ddl(valid: str) -> str:
    # `event_time IS NOT NULL` too: UNIX_TIMESTAMP() could tick between the column and this filter
    return f"""CREATE TEMPORARY VIEW {VALID_VIEW} AS
SELECT `price`, event_time FROM {SOURCE_TABLE}
WHERE {valid}
    AND event_time IS NOT NULL"""


def windows_query(window_s: int) -> str:
    """The windows (append-only: a window is emitted once, when the watermark passes its
    end, or at the end of the input), and the running count of valid events in the same
    job (an updating row), from one scan of the topic."""
    return f"""SELECT 'window' AS kind, window_start, SUM(`price`) AS total_purchase, COUNT(*) AS orders
FROM TABLE(TUMBLE(TABLE {VALID_VIEW}, DESCRIPTOR(event_time), {interval(window_s)}))
GROUP BY window_start, window_end
UNION ALL
SELECT 'valid' AS kind, CAST(NULL AS TIMESTAMP(3)) AS window_start, CAST(NULL AS BIGINT) AS total_purchase, COUNT(*) AS orders
FROM {VALID_VIEW}"""
