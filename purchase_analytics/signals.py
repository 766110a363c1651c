"""Signal handlers that set a `threading.Event`, for the producer's and the job's stop.

The job's: SIGINT/SIGTERM stop at once (the checkpoints stay consistent); SIGUSR1 drains:
process everything available now, then stop (`make run EVENTS=N` uses it)."""

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


class JobSignals:
    def __init__(self):
        self.stop = threading.Event()
        self.drain = threading.Event()
        self.installed = False

    def install(self) -> JobSignals:
        set_on_signal(self.stop, signal.SIGINT, signal.SIGTERM)
        set_on_signal(self.drain, signal.SIGUSR1)
        self.installed = True
        return self
