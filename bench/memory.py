"""Memory over a long steady run: the job's state-store rows and RSS over time. With short
windows and watermark, windows close all through the run, so bounded state is visible."""

from __future__ import annotations

from .spark import Batch


def state_series(batches: list[Batch], t0: float, points: int = 60) -> list[tuple[float, int]]:
    """(seconds since t0, state rows) per batch, thinned to about `points` entries."""
    series = [(round(b.seen_s - t0, 1), b.state_rows) for b in batches]
    step = max(1, len(series) // points)
    return series[::step]


def rss_series(samples: list[tuple[float, int]], t0: float, points: int = 60) -> list[tuple[float, float]]:
    series = [(round(t - t0, 1), round(kb / 1024, 1)) for t, kb in samples if t >= t0]
    step = max(1, len(series) // points)
    return series[::step]


def bounded(values: list[int]) -> dict:
    """State is bounded when the second half of the run holds no more than the first half
    (plus one window of slack): growth would show as a rising second half."""
    if len(values) < 4:
        return {"bounded": None, "max_first_half": max(values, default=0), "max_second_half": None}
    half = len(values) // 2
    first, second = max(values[:half]), max(values[half:])
    return {"bounded": second <= first + 1, "max_first_half": first, "max_second_half": second}
