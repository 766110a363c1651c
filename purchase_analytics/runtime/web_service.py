"""A local web server run in the background in its own process group (Kafka UI, dashboard).

The server and everything it spawns (textual-serve starts one kaskade per browser tab)
share one process group, so stopping sends SIGTERM to the whole group, waits, then SIGKILL:
a plain SIGTERM to the server alone was seen to leave a child running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .processes import log_tail, pid_alive, port_open, read_pid


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def stop_group(pgid: int, timeout_s: float = 10.0) -> bool:
    """SIGTERM to the group, wait, then SIGKILL to what is left. True if anything ran."""
    if not group_members(pgid):
        return False
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait_s
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not group_members(pgid):
            return True
    return True


@dataclass(frozen=True)
class WebService:
    name: str  # "kafka-ui", "dashboard": names the pid and log files
    port: int
    state_dir: Path  # holds NAME.pid and NAME.log
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    @property
    def url_file(self) -> Path:
        return self.state_dir / f"{self.name}.url"

    def is_running(self) -> bool:
        return pid_alive(read_pid(self.pid_file))

    def running_url(self) -> str:
        """Where the running server listens (it may have been started with another port)."""
        try:
            return self.url_file.read_text().strip()
        except FileNotFoundError:
            return self.url

    def start(self, module: str, args: list[str], ready_timeout_s: float = 30.0, env: dict[str, str] | None = None) -> bool:
        """`python -m module args` in a new session; return once the port answers.
        True if started here, False if it already ran; RuntimeError (one line) if it cannot start."""
        if self.is_running():
            return False
        if port_open(self.port, self.host):
            raise RuntimeError(f"port {self.port} is taken by another process; stop it or choose another port")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        self.pid_file.write_text(str(proc.pid))
        self.url_file.write_text(self.url)
        deadline = time.monotonic() + ready_timeout_s
        while not port_open(self.port, self.host):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                last = log_tail(self.log_file, 1).strip() or "no output"
                raise RuntimeError(f"it did not start on port {self.port} ({last}); log {self.log_file}")
            time.sleep(0.2)
        return True

    def stop(self) -> bool:
        """Stop the whole process group. True if something was running."""
        pid = read_pid(self.pid_file)
        stopped = stop_group(pid) if pid else False
        self.pid_file.unlink(missing_ok=True)
        self.url_file.unlink(missing_ok=True)
        return stopped
