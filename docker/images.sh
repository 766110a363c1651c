#!/usr/bin/env bash
# Build the project's images only when their inputs changed.
#
#   docker/images.sh base  IMAGE                 debootstrap base (docker-without-registry/base-image.sh)
#   docker/images.sh kafka IMAGE BASE_IMAGE      Kafka from Maven jars (docker-without-registry/kafka-image)
#   docker/images.sh spark IMAGE BASE_IMAGE      docker/Dockerfile.spark
#   docker/images.sh web   IMAGE BASE_IMAGE      Kafka UI (kaskade) + dashboard (docker/web-image)
#
# Each image carries a label with a hash of its inputs (Dockerfile, scripts, jars,
# requirements, base image id, versions); a matching label means nothing to do.
# Needs the jars from `make jars` and, for spark, SPARK_VERSION (from requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

label=org.purchase-analytics.inputs
jars_dir=.cache/jars

# The classic builder when no buildx plugin is installed (engine 20.10 here).
if [[ -z "${DOCKER_BUILDKIT-}" ]] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

hash_files() { # hash of file names and contents
    find -L "$@" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-32
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || echo "$1"; }

require_jars() {
    compgen -G "$jars_dir/$1/*.jar" >/dev/null ||
        { echo "no jars in $jars_dir/$1: run 'make jars' first" >&2; exit 1; }
}

# build IMAGE HASH DOCKER_BUILD_ARGS... : skip when IMAGE already has label HASH
build() {
    local image=$1 hash=$2 current start
    shift 2
    current=$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$image" 2>/dev/null || true)
    if [[ "$current" == "$hash" ]]; then
        echo "image $image is up to date (inputs $hash)"
        return
    fi
    echo "building $image (inputs $hash) ..."
    start=$(date +%s)
    docker build --force-rm --label "$label=$hash" -t "$image" "$@"
    echo "built $image in $(( $(date +%s) - start ))s"
}

what=${1:?usage: images.sh base|kafka|spark|web IMAGE [BASE_IMAGE]}
image=${2:?IMAGE missing}
base=${3-}

case "$what" in
base)
    exec docker-without-registry/base-image.sh "$image"
    ;;
kafka)
    : "${base:?BASE_IMAGE missing}" "${KAFKA_VERSION:?KAFKA_VERSION not set}"
    require_jars kafka
    hash=$( { echo "$KAFKA_VERSION $(image_id "$base")"; hash_files docker-without-registry/kafka-image "$jars_dir/kafka"; } | sha256sum | cut -c1-32)
    # The build context is staged outside the repo's .dockerignore: the recipe plus libs/.
    context=.cache/docker/kafka-context
    rm -rf "$context" && mkdir -p "$context/libs"
    cp -R docker-without-registry/kafka-image/. "$context/"
    cp -l "$jars_dir"/kafka/*.jar "$context/libs/" 2>/dev/null || cp "$jars_dir"/kafka/*.jar "$context/libs/"
    build "$image" "$hash" --build-arg BASE_IMAGE="$base" --build-arg KAFKA_VERSION="$KAFKA_VERSION" "$context"
    rm -rf "$context" && rmdir .cache/docker 2>/dev/null || true
    ;;
spark)
    : "${base:?BASE_IMAGE missing}" "${SPARK_VERSION:?SPARK_VERSION not set (make exports it from requirements.txt)}"
    require_jars spark-kafka
    hash=$( { echo "$SPARK_VERSION ${SCALA_BINARY_VERSION:-2.13} $(image_id "$base")"; hash_files docker/Dockerfile.spark .dockerignore requirements.txt "$jars_dir/spark-kafka"; } | sha256sum | cut -c1-32)
    build "$image" "$hash" -f docker/Dockerfile.spark \
        --build-arg BASE_IMAGE="$base" \
        --build-arg SPARK_VERSION="$SPARK_VERSION" \
        --build-arg SCALA_BINARY_VERSION="${SCALA_BINARY_VERSION:-2.13}" .
    ;;
web)
    : "${base:?BASE_IMAGE missing}"
    hash=$( { image_id "$base"; hash_files docker/web-image requirements.txt requirements-ui.txt; } | sha256sum | cut -c1-32)
    context=.cache/docker/web-context
    rm -rf "$context" && mkdir -p "$context"
    cp docker/web-image/Dockerfile requirements.txt requirements-ui.txt "$context/"
    build "$image" "$hash" --build-arg BASE_IMAGE="$base" "$context"
    rm -rf "$context" && rmdir .cache/docker 2>/dev/null || true
    ;;
*)
    echo "unknown image kind: $what (base|kafka|spark|web)" >&2
    exit 2
    ;;
esac
