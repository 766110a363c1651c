#!/usr/bin/env bash
# build/cached-jars.sh [--link] OUTDIR POM [MAVEN_OPTION...]: the runtime jars of POM (Maven's
# dependency:copy-dependencies with the given options) into OUTDIR (make jars: Kafka and
# Spark's connector; make bench-peers: Flink's connector).
#
# Maven fetches them once per POM and set of options into JAR_CACHE/<name of OUTDIR>-<hash of
# both>, shared by every checkout; OUTDIR gets a copy (the Docker image copies it in), or with
# --link is a symbolic link to it (Kafka's: the broker's JVM class archive holds the jars'
# paths, which must be the same for every checkout; runtime/class_archive.py). Maven's own
# start-up is what a fresh clone then saves: about two seconds a set. A changed POM or
# version gives a new hash, so a new fetch; old ones stay until the cache is cleared.
#
# Env: JAR_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/purchase-analytics/jars).
set -euo pipefail

link=false
if [ "${1-}" = --link ]; then
    link=true
    shift
fi
out=${1:?usage: cached-jars.sh OUTDIR POM [MAVEN_OPTION...]}
pom=${2:?usage: cached-jars.sh OUTDIR POM [MAVEN_OPTION...]}
shift 2
cache_root=${JAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/purchase-analytics/jars}
key=$({ cat "$pom"; printf '%s\n' "$@"; } | sha256sum | cut -c1-16)
cached=$cache_root/$(basename "$out")-$key

command -v mvn >/dev/null || [ -e "$cached/.fetched" ] || {
    echo "error: Maven (mvn) is required to fetch the jars of $pom; apt-get install maven" >&2
    exit 1
}
mkdir -p "$cache_root"
(
    flock 9 # one fetch per cache entry, whichever checkout asks first
    if [ ! -e "$cached/.fetched" ]; then
        rm -rf "$cached"
        echo "fetching the jars of $pom (once per version, into $cached)"
        # Batch mode without transfer progress; jansi.noreset: Maven's console library (jansi 2)
        # otherwise writes colour resets (ESC[0m) when it starts and stops, even in batch mode.
        MAVEN_OPTS="${MAVEN_OPTS:-} -Djansi.noreset=true" \
            mvn -q -B --no-transfer-progress -f "$pom" dependency:copy-dependencies -DincludeScope=runtime "$@" -DoutputDirectory="$cached"
        touch "$cached/.fetched"
    fi
) 9>"$cached.lock"

rm -rf "$out"
mkdir -p "$(dirname "$out")"
if $link; then
    ln -s "$cached" "$out"
else
    cp -r "$cached" "$out"
    rm -f "$out/.fetched"
fi
