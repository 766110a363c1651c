"""The JVMs the project starts: which `java`, which JDK, and the class archive each maps.

A class archive (CDS, or from AOT_CACHE_JDK on an ahead-of-time cache) holds the classes a
JVM loads at start, parsed and laid out, so a start takes less CPU. runtime/class_archive.py
trains and writes them; the Spark session and the local brokers map them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from .config import user_cache_dir


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
    java_path = Path(java or ensure_java()).resolve()
    binary = java_path.stat()
    try:
        training = hashlib.sha256((Path(__file__).parent / "runtime" / "class_archive.py").read_bytes()).hexdigest()
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
