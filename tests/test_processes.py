"""runtime/processes.py: pid files, stopping by PID (SIGTERM, then SIGKILL), waiting with a
deadline, free ports. Real child processes, no broker."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from purchase_analytics.runtime.processes import (
    free_port,
    log_tail,
    pid_alive,
    port_open,
    read_pid,
    stop_pid,
    stop_pids,
    wait_until,
)

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def child(code: str = "import time; print('ready', flush=True); time.sleep(60)") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"  # its signal handlers are in place
    return proc


def test_stop_pid_terminates_a_process_and_says_whether_it_ran():
    proc = child()
    try:
        assert pid_alive(proc.pid)
        assert stop_pid(proc.pid, timeout_s=10)
        assert proc.wait(5) == -15  # SIGTERM was enough
        assert not pid_alive(proc.pid)
        assert not stop_pid(proc.pid)  # already gone: nothing to stop
        assert not stop_pid(None)
    finally:
        proc.kill()


def test_stop_pid_kills_a_process_that_ignores_sigterm():
    proc = child(IGNORES_SIGTERM)
    try:
        assert stop_pid(proc.pid, timeout_s=0.5)
        assert proc.wait(5) == -9  # SIGKILL after the timeout
    finally:
        proc.kill()


def test_stop_pids_signals_all_before_waiting_for_each():
    procs = [child(), child(IGNORES_SIGTERM), child()]
    try:
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        assert stop_pids([p.pid for p in procs] + [gone.pid, None], timeout_s=0.5) == 3  # the running ones
        assert [p.wait(5) for p in procs] == [-15, -9, -15]
    finally:
        for proc in procs:
            proc.kill()


def test_a_zombie_counts_as_gone():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_until(lambda: open(f"/proc/{proc.pid}/stat").read().split(")")[-1].split()[0] == "Z", 10, "the child to exit")
    try:
        assert not pid_alive(proc.pid)  # exited, not yet reaped by its parent
    finally:
        proc.wait()


def test_read_pid_and_log_tail(tmp_path):
    assert read_pid(tmp_path / "missing.pid") is None
    (tmp_path / "bad.pid").write_text("not a pid\n")
    assert read_pid(tmp_path / "bad.pid") is None
    (tmp_path / "ok.pid").write_text("4242\n")
    assert read_pid(tmp_path / "ok.pid") == 4242
    (tmp_path / "x.log").write_text("".join(f"line {i}\n" for i in range(30)))
    assert log_tail(tmp_path / "x.log", 3) == "line 27\nline 28\nline 29"
    assert log_tail(tmp_path / "none.log") == f"(no log at {tmp_path / 'none.log'})"


def test_wait_until_returns_once_true_and_names_what_it_waited_for():
    calls = []
    wait_until(lambda: calls.append(1) or len(calls) >= 3, 5, "three calls", interval_s=0.01)
    assert len(calls) == 3
    with pytest.raises(TimeoutError, match=r"^timed out after 0s waiting for the impossible$"):
        wait_until(lambda: False, 0.05, "the impossible", interval_s=0.01)


def test_free_port_is_free_and_port_open_sees_a_listener():
    port = free_port()
    assert not port_open(port)
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert port_open(port)
    assert not port_open(port)
