"""The job where there is no .env: the package alone, from its zip (what --py-files gives a driver
on a cluster), in a folder of its own. Its invalid messages reach the default dead-letter topic."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections import Counter

from dotenv import dotenv_values

from purchase_analytics.defaults import DEFAULTS
from purchase_analytics.sinks import read_json_lines_totals

from conftest import AGGREGATOR, CHILD_ENV, ROOT, expected_totals, read_topic, send_raw
from malformed import MALFORMED, VALID

T0 = 1_700_000_000


def package_zip(path):
    """The package's modules in a zip, as `make package` builds it."""
    with zipfile.ZipFile(path, "w") as z:
        for module in sorted((ROOT / "purchase_analytics").rglob("*.py")):
            z.write(module, module.relative_to(ROOT))
    return path


def test_a_job_without_dot_env_dead_letters_to_the_default_topic(kafka, new_topic, tmp_path):
    topic = new_topic(1)
    bad = [payload for payload, _ in MALFORMED[:6]]
    good = [{**VALID, "order_id": f"v{i}", "price": 100 + i, "ts": T0 + 61 * i} for i in range(6)]
    send_raw(kafka, topic, [(json.dumps(event).encode(), 0) for event in good] + [(payload, 0) for payload in bad])

    # No setting from make's environment or .env: only the package's defaults, but for where the
    # connector jars are (the zip has no project folder around it) and the tests' cheap JVM.
    settings = DEFAULTS.keys() | dotenv_values(ROOT / ".env").keys()
    env = {k: v for k, v in CHILD_ENV.items() if k not in settings or k == "SPARK_DRIVER_JAVA_OPTIONS"}
    env.update(
        PYTHONPATH=str(package_zip(tmp_path / "purchase_analytics.zip")), SPARK_CONNECTOR_JARS_DIR=str(ROOT / ".cache/jars/spark-kafka")
    )
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(AGGREGATOR), "--master", "local[1]", "--bootstrap-servers", kafka, "--topic", topic]
        + ["--checkpoint", "ckpt", "--output-dir", "out", "--available-now", "--no-console"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (work / ".env").exists() and "purchase_analytics.zip" in env["PYTHONPATH"]
    assert f"{len(bad)} rejected (dead-letter topic)" in proc.stderr
    assert read_json_lines_totals(work / "out") == expected_totals(good)

    letters = [r for r in read_topic(kafka, DEFAULTS["KAFKA_DLQ_TOPIC_NAME"]) if dict(r.headers)["source_topic"].decode() == topic]
    assert Counter(r.value for r in letters) == Counter(bad)
