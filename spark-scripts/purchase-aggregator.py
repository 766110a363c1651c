#!/usr/bin/env python3
"""Spark Structured Streaming job: purchase totals per 10-minute event-time window.

Run it through `make spark-consume-purchase` (or `spark-submit`); see `--help` for options.
"""
import sys
from pathlib import Path

# With spark-submit the package arrives through --py-files; run directly, it sits beside us.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from purchase_analytics.job import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
