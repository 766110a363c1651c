#!/usr/bin/env python3
"""Smoke job: start Spark, aggregate a few in-memory purchases per window, print them.
Proves Java, pyspark and the package work before Kafka is involved."""

import sys

from purchase_analytics.smoke import main

if __name__ == "__main__":
    sys.exit(main())
