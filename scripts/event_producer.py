#!/usr/bin/env python3
"""Send Faker-based JSON purchase events to Kafka. Options fall back to the environment,
then .env, then defaults; see `--help`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from purchase_analytics.producer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
