#!/usr/bin/env python3
"""Spark Structured Streaming job: purchase totals per 10-minute event-time window.

Run it through `make spark-consume-purchase` (or `spark-submit`); see `--help` for options.
The package is installed in .venv (`make venv`); under spark-submit it also arrives
through --py-files (the zip `make package` builds), and in the Docker image via PYTHONPATH.
"""

import sys

from purchase_analytics.job import main

if __name__ == "__main__":
    sys.exit(main())
