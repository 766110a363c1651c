"""`spark-scripts/spark-example.py`: the transformation on a static DataFrame, no Kafka."""
from __future__ import annotations

import sys

from .config import load_settings
from .events import PurchaseEvent
from .sinks import ConsoleSink, WindowSinks
from .spark_session import create_spark_session
from .transform import aggregate_purchases, parse_events, valid_events


def main(argv: list[str] | None = None) -> int:
    master = (argv or sys.argv[1:] or [load_settings().get("SPARK_MASTER_URL", "local[*]")])[0]
    spark = create_spark_session("SparkExample", master)
    try:
        events = [PurchaseEvent(f"order-{i}", i, "Chair", "red", 100 * (i + 1), 1_700_000_000 + 120 * i) for i in range(10)]
        raw = spark.createDataFrame([(e.to_json_bytes(),) for e in events] + [(b"not json",)], "value binary")
        windows = aggregate_purchases(valid_events(parse_events(raw, 150_000)), "10 minutes", "10 minutes")
        WindowSinks([ConsoleSink()])(windows, 0)
    finally:
        spark.stop()
    return 0
