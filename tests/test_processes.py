"""runtime/processes.py: pid files, stopping by PID (SIGTERM, then SIGKILL), waiting with a
deadline, free ports. Real child processes, no broker."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from purchase_analytics.runtime.processes import (
    class_archive_file,
    class_archive_options,
    ensure_java,
    free_port,
    installed_jdk,
    jdk_feature,
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


def test_ensure_java_prefers_java_home_and_explains_a_missing_java(tmp_path, monkeypatch):
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert ensure_java() == str(java)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"Java 17\+ is required but `java` was not found"):
        ensure_java()


def fake_jdk(root, name: str, version: str | None):
    """A JDK's home as Debian and Temurin install it: bin/java and a `release` file."""
    java = root / name / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    if version:
        (root / name / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return java


def test_a_jdk_is_found_by_its_release_and_its_class_archive_kind_follows(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    java17 = fake_jdk(tmp_path, "java-17-openjdk-amd64", "17.0.15")
    java25 = fake_jdk(tmp_path, "temurin-25-jdk-amd64", "25.0.3")
    fake_jdk(tmp_path, "broken", None)  # no release file: not a JDK this can tell
    assert (jdk_feature(java17), jdk_feature(java25), jdk_feature(tmp_path / "broken" / "bin" / "java")) == (17, 25, None)
    assert installed_jdk(25, root=tmp_path) == tmp_path / "temurin-25-jdk-amd64"
    assert installed_jdk(21, root=tmp_path) is None
    jsa, aot = (class_archive_file("spark", tmp_path, java=str(java)) for java in (java17, java25))
    assert (jsa.suffix, aot.suffix) == (".jsa", ".aot") and jsa.stem != aot.stem  # one archive per JDK
    assert class_archive_file("spark", tmp_path, java=str(java17)) == jsa  # the same inputs, the same archive
    partial = tmp_path / "partial"
    assert class_archive_options(jsa) == [f"-XX:SharedArchiveFile={jsa}", "-Xlog:cds*=off"]
    assert class_archive_options(jsa, write_to=partial) == [f"-XX:ArchiveClassesAtExit={partial}", "-Xlog:cds*=off"]
    assert class_archive_options(aot) == [f"-XX:AOTCache={aot}", "-Xlog:aot*=off", "-Xlog:cds*=off"]
    assert class_archive_options(aot, write_to=partial) == [f"-XX:AOTCacheOutput={partial}", "-Xlog:aot*=off", "-Xlog:cds*=off"]
