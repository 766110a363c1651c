"""jvm.py: which `java` runs, which JDK is installed, and the class archive each maps."""

from __future__ import annotations

import pytest

from purchase_analytics.jvm import class_archive_file, class_archive_options, ensure_java, installed_jdk, jdk_feature


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
