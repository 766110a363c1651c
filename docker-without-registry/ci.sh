#!/usr/bin/env bash
# CI hook (`make ci-docker`, called by .ci/run): run `make test-docker` when a Docker
# engine can be had on this machine, otherwise say why it is skipped and exit 0.
# Installs what it needs with apt (docker.io, debootstrap) when run as root.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
read -ra make_cmd <<<"${TEST_DOCKER_MAKE:-make}" # e.g. "make -f Makefile"

skip() {
    echo "test-docker skipped: $*"
    exit 0
}

missing=()
if ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null; then missing+=(docker.io); fi
command -v debootstrap >/dev/null || missing+=(debootstrap) # for the base image (no registry)
if ((${#missing[@]})); then
    [[ "$(id -u)" == 0 ]] || skip "${missing[*]} not installed and not root (apt-get install ${missing[*]})"
    command -v apt-get >/dev/null || skip "${missing[*]} not installed and no apt-get here"
    echo "installing ${missing[*]} ..."
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
        skip "apt-get install ${missing[*]} failed"
fi

started=0
if ! docker info >/dev/null 2>&1; then
    docker-without-registry/dockerd.sh start || skip "the Docker engine could not be started here (see above)"
    started=1
fi
[[ $started == 1 ]] && trap 'docker-without-registry/dockerd.sh stop' EXIT

"${make_cmd[@]}" --no-print-directory test-docker
