"""Signal handlers that set a `threading.Event`, for the producer's and the job's stop."""

from __future__ import annotations

import signal
import threading


def set_on_signal(event: threading.Event, *signals: signal.Signals) -> None:
    """On any of `signals`, set `event`, from a short-lived thread.

    Python runs a handler on the main thread between two bytecodes, which can be inside that
    thread's own `event.wait()` while it holds the event's lock; `event.set()` run right there
    would wait for that lock forever. (It did: a producer stopped by SIGTERM hung in
    `Event.set` under `Event.wait`, and the benchmark smoke run with it.) A new thread takes
    the lock once the main thread lets go of it."""

    def handler(signum, frame) -> None:
        threading.Thread(target=event.set, name=f"set on {signal.Signals(signum).name}", daemon=True).start()

    for sig in signals:
        signal.signal(sig, handler)
