#!/usr/bin/env bash
# Build a Debian bookworm base image without any image registry:
#   debootstrap --variant=minbase  ->  tar | docker import.
# It stands in for python:3.11-slim-bookworm (python3 + venv are included), so
# Dockerfile.spark and docker-without-registry/kafka-image build on it unchanged.
#
# Usage: docker-without-registry/base-image.sh IMAGE_NAME   (skips the work if IMAGE_NAME exists with the same inputs)
set -euo pipefail

image=${1:?usage: base-image.sh IMAGE_NAME}
suite=${DEBIAN_SUITE:-bookworm}
include=${BASE_IMAGE_INCLUDE:-ca-certificates,python3,python3-venv}

# Only the Debian mirror this machine's own apt sources name (deb822 "URIs:" or one-line "deb URL").
mirror=$(grep -hsE '^\s*(URIs:|deb\s)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -oE '(https?|file)://[^ ]*/debian/?' | grep -v -- '-security' | head -n1 || true)
[[ -n "$mirror" ]] || { echo "no Debian mirror in this machine's apt sources (/etc/apt/sources.list*): debootstrap needs one" >&2; exit 1; }
mirror=${mirror%/}

# Extra CA certificates this host trusts (e.g. a TLS-inspecting proxy in front of PyPI):
# the base image trusts them too, so `pip install` in image builds works here as on the host.
extra_cas=(/usr/local/share/ca-certificates/*.crt)
[[ -e "${extra_cas[0]}" ]] || extra_cas=()
cas_hash=$(cat /dev/null "${extra_cas[@]}" | sha256sum | cut -c1-16)

inputs="suite=$suite include=$include mirror=$mirror cas=$cas_hash script=$(sha256sum "$0" | cut -c1-16)"
inputs_hash=$(printf '%s' "$inputs" | sha256sum | cut -c1-32)
label=org.purchase-analytics.inputs
current=$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$image" 2>/dev/null || true)
if [[ "$current" == "$inputs_hash" ]]; then
    echo "base image $image is up to date (inputs $inputs_hash)"
    exit 0
fi

command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pa-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

echo "debootstrap $suite from $mirror (include: $include) ..."
start=$(date +%s)
debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}
echo "debootstrap took $(( $(date +%s) - start ))s"

# Same suites as the official Debian images, and a small footprint.
security=${mirror%/debian}/debian-security
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
if (( ${#extra_cas[@]} )); then
    cp "${extra_cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
    echo "added ${#extra_cas[@]} CA certificate(s) of this host to the base image"
fi
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/tmp/* "$rootfs"/var/log/*.log

start=$(date +%s)
tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change "LABEL $label=$inputs_hash" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["/bin/bash"]' \
    - "$image" >/dev/null
echo "docker import took $(( $(date +%s) - start ))s -> $image"
