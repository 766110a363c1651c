#!/usr/bin/env bash
# build/wire-jar.sh JAR PYTHON SOURCE...: the job's JVM classes (jvm/: the wire parser, the
# checkpoints' local file system) compiled against the jars of PYTHON's pyspark, into JAR.
# Built once per set of sources, Spark version and JDK into JAR_CACHE (as build/cached-jars.sh),
# shared by every checkout: a fresh clone copies it.
#
# Env: JAR_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/purchase-analytics/jars).
set -euo pipefail

jar=${1:?usage: wire-jar.sh JAR PYTHON SOURCE...}
python=${2:?usage: wire-jar.sh JAR PYTHON SOURCE...}
shift 2
command -v javac >/dev/null || {
    echo "error: a JDK 17+ (javac) is required to build the job's wire parser; apt-get install openjdk-17-jdk-headless" >&2
    exit 1
}
spark=$("$python" -c 'import os, pyspark; print(pyspark.__version__, os.path.dirname(pyspark.__file__))')
cache_root=${JAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/purchase-analytics/jars}
key=$({ cat "$@"; echo "${spark%% *}"; readlink -f "$(command -v javac)"; } | sha256sum | cut -c1-16)
cached=$cache_root/wire-$key.jar

mkdir -p "$cache_root"
(
    flock 9
    if [ ! -e "$cached" ]; then
        echo "compiling the job's wire parser (once per source, Spark and JDK, into $cached)"
        classes=$(mktemp -d)
        javac -nowarn --release 17 -d "$classes" -cp "${spark#* }/jars/*" "$@"
        jar cf "$cached.part" -C "$classes" .
        mv "$cached.part" "$cached"
        rm -rf "$classes"
    fi
) 9>"$cached.lock"
cp "$cached" "$jar"
