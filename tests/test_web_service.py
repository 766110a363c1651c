"""runtime/web_service.py: a background web server in its own process group, as the Kafka UI
and the dashboard run. Python's own http.server is the server here: this file tests the
start and stop machinery; the real servers are tested in test_kafka_ui.py and test_dashboard.py."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from purchase_analytics.runtime.processes import free_port, port_open, wait_until
from purchase_analytics.runtime.web_service import WebService, group_members, stop_group


def http_server_args(port: int) -> list[str]:
    return [str(port), "--bind", "127.0.0.1"]


def test_start_serves_stop_frees_the_port_and_removes_the_state_files(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "hello.txt").write_text("hello\n")
    service = WebService("web", free_port(), tmp_path / "state")
    assert service.start("http.server", [*http_server_args(service.port), "--directory", str(tmp_path / "site")])
    try:
        with urllib.request.urlopen(f"{service.url}/hello.txt", timeout=10) as response:
            assert response.read() == b"hello\n"
        assert service.is_running() and service.running_url() == service.url
        assert not service.start("http.server", http_server_args(service.port))  # already running: nothing started
        pgid = int(service.pid_file.read_text())
    finally:
        assert service.stop()
    assert group_members(pgid) == [] and not port_open(service.port)
    assert not service.pid_file.exists() and not service.url_file.exists()
    assert not service.stop()  # nothing left to stop
    assert "GET /hello.txt" in service.log_file.read_text()  # the server's output went to its log


def test_a_server_that_exits_at_once_gives_one_line_with_its_last_words(tmp_path):
    service = WebService("web", free_port(), tmp_path)
    with pytest.raises(RuntimeError, match=rf"^it did not start on port {service.port} \(.*invalid int value.*\); log "):
        service.start("http.server", ["not-a-port"])
    assert not service.pid_file.exists()


def test_stop_group_ends_every_member_even_one_that_ignores_sigterm():
    script = "trap '' TERM; sleep 60 & sleep 60 & echo ready; wait"  # a shell ignoring SIGTERM, with two children
    leader = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert leader.stdout.readline().strip() == "ready"
        wait_until(lambda: len(group_members(leader.pid)) == 3, 10, "the shell and its two children")
        assert stop_group(leader.pid, timeout_s=0.5)
        assert group_members(leader.pid) == []
        assert leader.wait(5) == -9  # the shell needed the SIGKILL
        assert not stop_group(leader.pid)  # an empty group: nothing to stop
    finally:
        leader.kill()
        leader.wait()


def test_group_members_skips_zombies():
    leader = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    wait_until(lambda: open(f"/proc/{leader.pid}/stat").read().split(")")[-1].split()[0] == "Z", 10, "the group leader to exit")
    try:
        assert group_members(leader.pid) == []
    finally:
        leader.wait()
