"""What the benchmark's peer programs share: their command line (the same rules as the
Spark job, defaults from .env), their clock and the one JSON result they print.

A peer reads the whole topic from the earliest offset up to the end offsets it finds at
start, sums `price` and counts orders per tumbling event-time window, and prints every
window's final totals, like `bench/baseline.py`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from purchase_analytics.config import SettingsParser
from purchase_analytics.options import interval_seconds, non_negative_int, positive_int, topic_name


def whole_seconds(text: str) -> int:
    """Seconds as a number ("600") or a Spark interval ("10 minutes", as .env writes them)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = interval_seconds(text)
    if seconds != int(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number of seconds >= 0")
    return int(seconds)


@dataclass(frozen=True)
class PeerArgs:
    bootstrap_servers: str
    topic: str
    window_s: int
    watermark_s: int
    price_max: int
    max_future_s: int


def parse_peer_args(prog: str, description: str, argv: list[str] | None, extra=None) -> tuple[PeerArgs, argparse.Namespace]:
    """The peers' common options; `extra(parser)` adds a peer's own."""
    p = SettingsParser(prog=prog, description=description)
    p.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers")
    p.add_argument("--topic", required=True, type=topic_name, help="topic to read, from its earliest offset to its end at start")
    p.add_setting("--window-s", "WINDOW_DURATION", whole_seconds, help="tumbling window length, seconds")
    p.add_setting("--watermark-s", "WATERMARK_DELAY", whole_seconds, help="watermark delay (grace), seconds")
    p.add_setting("--price-max", "PRICE_MAX", positive_int, help="largest valid price")
    p.add_setting(
        "--max-future-s",
        "EVENT_MAX_FUTURE_S",
        non_negative_int,
        help="how far ahead of the processing time a valid ts may be",
    )
    if extra:
        extra(p)
    a = p.parse_args(argv)
    if a.window_s <= 0:
        p.error(f"--window-s must be > 0, got {a.window_s}")
    return PeerArgs(a.bootstrap_servers, a.topic, a.window_s, a.watermark_s, a.price_max, a.max_future_s), a


class PeerError(Exception):
    """A problem the user can fix (no broker, no topic, missing jars): one line, no traceback."""


def import_peer_module(name: str, peer: str):
    """Module `name` of peer `peer`'s own library, which lives in the peer's virtualenv
    (bench/peers.py; `make bench-peers` makes it)."""
    import importlib

    from .peers import python_of

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise PeerError(f"{exc}: run `make bench-peers`, then run this peer with {python_of(peer)}") from None


@dataclass
class PeerResult:
    """The JSON every peer prints. `windows` is the baseline's shape:
    {window start, epoch seconds: [total_purchase, orders]}."""

    peer: str
    version: str
    args: PeerArgs
    started: float = field(default_factory=time.monotonic)  # program start (monotonic)
    startup_s: float | None = None  # start to the first record (quix) or to job submission (flink)
    messages: int = 0
    valid: int = 0
    dropped_late: int = 0
    windows: dict[int, list[int]] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    stdout: TextIO | None = None  # where the JSON goes when the peer diverted fd 1 (divert_stdout)

    def since_start(self) -> float:
        return time.monotonic() - self.started

    def to_json(self) -> dict:
        elapsed = self.since_start()
        startup = self.startup_s or 0.0
        return {
            "peer": self.peer,
            "version": self.version,
            "messages": self.messages,
            "events": self.messages,  # the baseline's name for the same count
            "valid": self.valid,
            "rejected": self.messages - self.valid,
            "dropped_late": self.dropped_late,
            "elapsed_s": round(elapsed, 3),
            # net of start-up: messages over the time from the first record (or submission) to the end
            "events_per_s": round(self.messages / (elapsed - startup)) if elapsed > startup else None,
            **self.extra,
            "settings": {
                "window_s": self.args.window_s,
                "watermark_s": self.args.watermark_s,
                "price_max": self.args.price_max,
                "max_future_s": self.args.max_future_s,
            },
            "windows": {str(k): v for k, v in sorted(self.windows.items())},
        }


def divert_stdout() -> TextIO:
    """From here on, what writes to file descriptor 1 (a JVM child inherits it) goes to
    stderr; the returned stream is the original stdout, for the JSON result alone."""
    sys.stdout.flush()
    original = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return original


def run_peer(main_body, argv: list[str] | None) -> int:
    """Print the result as one JSON line on stdout (`result.stdout` if the peer diverted
    it); a PeerError as one `error:` line on stderr, exit 1."""
    try:
        result = main_body(argv)
    except PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = result.stdout or sys.stdout
    out.write(json.dumps(result.to_json()) + "\n")
    out.flush()
    return 0
