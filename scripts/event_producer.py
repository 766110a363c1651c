#!/usr/bin/env python3
"""Send Faker-based JSON purchase events to Kafka. Options fall back to the environment,
then .env, then defaults; see `--help`."""

import sys

from purchase_analytics.producer import main

if __name__ == "__main__":
    sys.exit(main())
