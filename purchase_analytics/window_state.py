"""The windows between micro-batches: each open window's running total, and the watermark.

The job reads each micro-batch once (job.BatchHandler): Spark sums the batch's valid
events per window, and this module folds those partial sums into the open windows with
the rules of Spark's own event-time aggregation:
- the watermark is the latest event time seen in earlier batches minus the delay; it only
  moves forward, at the end of a batch;
- an event whose window ends at or before the watermark is late: dropped, and counted;
- update mode emits every window a batch changed, with its running total; append mode
  emits a window once, when the watermark passes its end;
- a window the watermark has passed can never change again, so it leaves the state.

Pure Python, no Spark: the state is a handful of numbers per open window. It is saved in
the checkpoint after every batch (StateLog), before Spark commits the batch, so a batch
that runs again after a crash starts from exactly the state the first run started from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .checkpoint import CheckpointError

US = 1_000_000


def iso_us(epoch_us: int) -> str:
    """Spark's timestamp form in progress reports: 2026-01-01T00:00:00.000Z."""
    return datetime.fromtimestamp(epoch_us / US, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Window:
    """One window's total as the sinks receive it."""

    window_start: datetime
    window_end: datetime
    total_purchase: int
    orders: int


@dataclass(frozen=True)
class Partial:
    """What one batch holds for one window: the sum of its valid events, their number and
    the latest event time among them."""

    start_us: int
    total: int
    orders: int
    max_event_us: int


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch did, for the sinks and the job's progress."""

    batch_id: int
    messages: int
    rejected: int
    dropped_late: int  # valid events whose window had closed: counted in events
    state_rows: int  # open windows after the batch
    watermark_us: int | None  # after the batch
    windows: tuple[Window, ...]  # what the sinks receive, sorted by window

    @property
    def watermark(self) -> str | None:
        return None if self.watermark_us is None else iso_us(self.watermark_us)


@dataclass
class WindowState:
    window_us: int
    delay_us: int
    watermark_us: int | None = None
    open: dict[int, list[int]] = field(default_factory=dict)  # window start (us) -> [total, orders]

    def apply(self, batch_id: int, partials: Iterable[Partial], messages: int, rejected: int, append: bool) -> BatchOutcome:
        """Fold one batch's partial sums in; return what to emit. Mutates the state."""
        changed: set[int] = set()
        dropped = 0
        latest = None
        for p in partials:
            latest = p.max_event_us if latest is None else max(latest, p.max_event_us)
            if self.watermark_us is not None and p.start_us + self.window_us <= self.watermark_us:
                dropped += p.orders
                continue
            total = self.open.setdefault(p.start_us, [0, 0])
            total[0] += p.total
            total[1] += p.orders
            changed.add(p.start_us)
        if latest is not None and (self.watermark_us is None or latest - self.delay_us > self.watermark_us):
            self.watermark_us = latest - self.delay_us
        closed = {s for s in self.open if self.watermark_us is not None and s + self.window_us <= self.watermark_us}
        emit = sorted(closed if append else changed)
        windows = tuple(self._window(s) for s in emit)
        for s in closed:
            del self.open[s]
        return BatchOutcome(batch_id, messages, rejected, dropped, len(self.open), self.watermark_us, windows)

    def _window(self, start_us: int) -> Window:
        total, orders = self.open[start_us]
        start = datetime.fromtimestamp(start_us / US, timezone.utc)
        end = datetime.fromtimestamp((start_us + self.window_us) / US, timezone.utc)
        return Window(start, end, total, orders)

    def to_json(self) -> dict:
        return {
            "window_us": self.window_us,
            "delay_us": self.delay_us,
            "watermark_us": self.watermark_us,
            "open": [[s, t, o] for s, (t, o) in sorted(self.open.items())],
        }

    @classmethod
    def from_json(cls, data: dict) -> WindowState:
        return cls(data["window_us"], data["delay_us"], data["watermark_us"], {s: [t, o] for s, t, o in data["open"]})


class StateMismatch(CheckpointError):
    """The checkpoint's windows were made with another window length."""


class StateLog:
    """`<checkpoint>/query/window-state/<batch id>.json`: the state after each batch, written
    whole before Spark commits the batch. A batch starts from the newest state of a batch
    before it, so a batch run again after a crash sees what its first run saw. The two
    newest files are kept. `files` is a checkpoint.LocalFiles or HadoopFiles."""

    KEEP = 2

    def __init__(self, files, window_us: int, delay_us: int, checkpoint: str = ""):
        self.files, self.checkpoint = files, checkpoint
        self.window_us, self.delay_us = window_us, delay_us

    def _ids(self) -> list[int]:
        return sorted(int(n.removesuffix(".json")) for n in self.files.names() if n.endswith(".json") and n[:-5].isdigit())

    def load_before(self, batch_id: int) -> WindowState:
        earlier = [i for i in self._ids() if i < batch_id]
        if not earlier:
            return WindowState(self.window_us, self.delay_us)
        state = WindowState.from_json(json.loads(self.files.read(f"{earlier[-1]}.json")))
        if state.window_us != self.window_us:
            raise StateMismatch(
                f"checkpoint {self.checkpoint} holds windows {state.window_us / US:g} seconds long, this job's are "
                f"{self.window_us / US:g}; use the same --window, or start over with a new --checkpoint"
            )
        state.delay_us = self.delay_us  # a new watermark delay applies from now on
        return state

    def save(self, batch_id: int, state: WindowState) -> None:
        self.files.write(f"{batch_id}.json", json.dumps(state.to_json()))
        for old in self._ids()[: -self.KEEP]:
            if old < batch_id:
                self.files.delete(f"{old}.json")
