"""Small process utilities: pid files, stopping by PID only, waiting with a deadline."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path


def ensure_java() -> str:
    """The `java` to run, or one clear error line if there is none."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    if candidate and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if not found:
        raise RuntimeError(
            "Java 17+ is required but `java` was not found "
            "(install a JDK 17, e.g. `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME)"
        )
    return found


# The first JDK whose class archive is an ahead-of-time cache (JEPs 483, 514 and 515): besides
# the classes it holds them linked, and the method profiles of the training run, so the JIT
# compiles the hot code sooner.
AOT_CACHE_JDK = 25


def jdk_feature(java: str | Path) -> int | None:
    """The feature release (17, 25, ...) of the JDK whose `bin/java` this is, from the JDK's
    `release` file; None when there is none to read."""
    release = Path(java).resolve().parent.parent / "release"
    try:
        found = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def installed_jdk(release: int, root: Path = Path("/usr/lib/jvm")) -> Path | None:
    """The home of a JDK of feature release `release` installed under `root` (Debian's and
    Temurin's packages both install there; the first by name), or None."""
    for java in sorted(root.glob("*/bin/java")):
        if os.access(java, os.X_OK) and jdk_feature(java) == release:
            return java.parent.parent
    return None


def class_archive_file(name: str, *inputs: object, java: str | None = None) -> Path:
    """Where a JVM class archive of `inputs` (what the class path comes from) lives: one per
    combination with the `java` that maps it (ensure_java's by default) and the training that
    builds it (runtime/class_archive.py), in the user's cache, shared by every checkout. A JVM
    skips an archive of another JDK or class path anyway. From AOT_CACHE_JDK on it is an
    ahead-of-time cache (`-XX:AOTCache`, .aot), before it a CDS archive
    (`-XX:SharedArchiveFile`, .jsa)."""
    from ..config import user_cache_dir

    java_path = Path(java or ensure_java()).resolve()
    binary = java_path.stat()
    try:
        training = hashlib.sha256((Path(__file__).parent / "class_archive.py").read_bytes()).hexdigest()
    except OSError:  # the package imported from a zip (Spark's executors), which never start a JVM
        training = ""
    key = hashlib.sha256("\n".join(map(str, [*inputs, java_path, binary.st_size, binary.st_mtime_ns, training])).encode()).hexdigest()[:16]
    suffix = "aot" if (jdk_feature(java_path) or 0) >= AOT_CACHE_JDK else "jsa"
    return user_cache_dir() / "jvm" / f"{name}-{key}.{suffix}"


def class_archive_options(archive: Path, write_to: Path | None = None) -> list[str]:
    """The JVM options that map `archive` (class_archive_file's), or with `write_to` that write
    it there as the JVM exits. Quiet: a JVM skips a stale archive (another JDK, other jars),
    which only costs start-up time, and lists every class it leaves out of one it writes."""
    if archive.suffix == ".aot":
        option = f"-XX:AOTCacheOutput={write_to}" if write_to else f"-XX:AOTCache={archive}"
        return [option, "-Xlog:aot*=off", "-Xlog:cds*=off"]
    option = f"-XX:ArchiveClassesAtExit={write_to}" if write_to else f"-XX:SharedArchiveFile={archive}"
    return [option, "-Xlog:cds*=off"]


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def stop_pid(pid: int | None, timeout_s: float = 30.0) -> bool:
    """SIGTERM, wait, then SIGKILL. Returns True if the process was running."""
    if not pid_alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), 10, f"pid {pid} to exit")
    return True


def stop_pids(pids: list[int | None], timeout_s: float = 30.0) -> int:
    """SIGTERM all at once, then wait for each (nodes of one cluster: stopped one by one,
    the last would wait for a quorum that is gone). Returns how many were running."""
    running = [pid for pid in pids if pid_alive(pid)]
    for pid in running:
        os.kill(pid, signal.SIGTERM)
    for pid in running:
        stop_pid(pid, timeout_s)
    return len(running)


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"
