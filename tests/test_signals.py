"""signals.py: a stop signal sets its event even when it arrives while the main thread holds
that event's lock, as it does inside `Event.wait` (where the producer and the job wait)."""

import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent(
    """
    import os, signal, threading
    from purchase_analytics.signals import set_on_signal

    stop = threading.Event()
    set_on_signal(stop, signal.SIGTERM)
    with stop._cond:  # the lock Event.wait holds around its waiting
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, on this thread, the lock held
        for _ in range(1000):  # a few bytecodes: the handler has run by now
            pass
    print("set" if stop.wait(10) else "not set")
    """
)


def test_a_signal_sets_the_event_even_while_the_main_thread_holds_its_lock():
    try:
        proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the handler waited for the lock the main thread held: a deadlock")
    assert (proc.returncode, proc.stdout.strip()) == (0, "set"), proc.stderr
