"""Where the Spark job's CPU goes: Java Flight Recorder (in every JDK 17) samples the
driver JVM, which in local mode also runs the tasks; we count the samples of task threads
by their leaf method and by what they are inside (inclusive)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from purchase_analytics.config import load_settings
from purchase_analytics.jvm import ensure_java
from purchase_analytics.spark_session import SparkConfig

# What a task thread can be busy with, found anywhere on its sampled stack.
CATEGORIES = {
    "JSON -> VARIANT (try_parse_json)": ("VariantBuilder", "parseJson", "JsonParser"),
    "VARIANT field reads (try_variant_get)": ("VariantGet",),
    "schema_of_variant (type checks)": ("SchemaOfVariant", "schemaOf"),
    "regexp (type-name checks)": ("regex", "RegExp"),
    "Kafka fetch and decode": ("org.apache.kafka", "KafkaDataConsumer", "KafkaRecordToRow"),
    "state store": ("StateStore", "HDFSBackedStateStore", "RocksDB"),
    "hash aggregate": ("HashAggregate", "UnsafeFixedWidthAggregationMap", "BytesToBytesMap"),
    "Cast built per value (inside VariantGet)": ("Cast.<init>", "Cast.$anonfun", "SQLConf"),
}
TASK_THREAD = "Executor task launch worker"


def java_options(recording: Path) -> str:
    """For JAVA_TOOL_OPTIONS: every JVM started with it records until it exits."""
    return f"-XX:StartFlightRecording=filename={recording},settings=profile,dumponexit=true"


def jfr_tool() -> Path:
    """The `jfr` of the JDK that Spark runs on (SPARK_JAVA_HOME): an older JDK's cannot read
    a newer one's recording."""
    java_home = SparkConfig.from_settings(load_settings()).java_home
    return (java_home / "bin" / "jfr") if java_home else Path(ensure_java()).resolve().parent / "jfr"


def summarize(recording: Path, top: int = 10) -> dict | None:
    jfr = jfr_tool()
    if not recording.exists() or not jfr.exists():
        return None
    text = subprocess.run(
        [str(jfr), "print", "--events", "jdk.ExecutionSample", "--stack-depth", "64", str(recording)], capture_output=True, text=True
    ).stdout
    leaf: dict[str, int] = {}
    inside = dict.fromkeys(CATEGORIES, 0)
    samples = 0
    for event in text.split("jdk.ExecutionSample")[1:]:
        if TASK_THREAD not in event:
            continue
        frames = re.findall(r"^\s+([\w$.<>]+)\(", event.split("stackTrace = [", 1)[-1], re.M)
        if not frames:
            continue
        samples += 1
        name = _method(frames[0])
        leaf[name] = leaf.get(name, 0) + 1
        stack = " ".join(frames)
        for category, needles in CATEGORIES.items():
            if any(n in stack for n in needles):
                inside[category] += 1
    if not samples:
        return None
    share = lambda n: round(100 * n / samples, 1)  # noqa: E731
    return {
        "task_samples": samples,
        "top_leaf_methods_pct": [(m, share(n)) for m, n in sorted(leaf.items(), key=lambda kv: -kv[1])[:top]],
        "inside_pct": {c: share(n) for c, n in sorted(inside.items(), key=lambda kv: -kv[1])},
    }


def _method(frame: str) -> str:
    """`org.apache.spark.sql.Foo$Bar.baz` -> `Foo$Bar.baz`."""
    cls, _, method = frame.rpartition(".")
    return f"{cls.rsplit('.', 1)[-1]}.{method}"
