#!/usr/bin/env bash
# Builds the local base image that tests pass to app Dockerfiles as BASE_IMAGE, since Docker Hub's
# python images cannot be pulled here: a minimal Debian bookworm made by debootstrap from the
# machine's own apt mirror, with what users' Python Dockerfiles expect of python:3.12-slim: python3
# (also as `python`), pip (`pip install` into the system Python, as the official image allows) and
# venv. Idempotent: the image carries a label with the hash of this script, and is rebuilt only
# when the script (its definition) changed; the root filesystem tarball is cached in .cache/ under
# the same hash, so a fresh engine only re-imports it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${BATON_BASE_IMAGE:-localhost/baton-python-base:bookworm}"
SUITE=bookworm
PACKAGES=python3,python3-pip,python3-venv,python-is-python3
DEFINITION="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
LABEL=io.baton.base-image.definition
ROOTFS_TARBALL="$ROOT/.cache/baton-python-base-$SUITE-$DEFINITION.tar"

# The first Debian mirror that apt is configured with for $SUITE (deb822 or one-line format).
apt_mirror() {
    local mirror
    mirror="$(
        awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            FILENAME ~ /\.sources$/ {
                uris = ""; suites = ""; types = ""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) uris = substr($i, 6)
                    if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
                    if ($i ~ /^Types:/) types = " " substr($i, 7) " "
                }
                split(uris, u, " ")
                if (types ~ / deb / && suites ~ (" " suite " ")) { print u[1]; exit }
            }
            FILENAME ~ /\.list$/ {
                for (i = 1; i <= NF; i++) {
                    line = $i
                    gsub(/\[[^]]*\]/, "", line)
                    split(line, w, " ")
                    if (w[1] == "deb" && w[3] == suite) { print w[2]; exit }
                }
            }
        ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list \
            2>/dev/null || true
    )"
    echo "${mirror:-http://deb.debian.org/debian}"
}

build_rootfs_tarball() {
    local mirror rootfs
    mirror="$(apt_mirror)"
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' RETURN
    echo "base-image: debootstrap $SUITE from $mirror"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # PEP 668's marker makes pip refuse the system Python; python:3.12-slim has none, and
    # Dockerfiles written for it run `pip install` as root.
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    mkdir -p "$(dirname "$ROOTFS_TARBALL")"
    tar -C "$rootfs" -cf "$ROOTFS_TARBALL.partial" .
    mv "$ROOTFS_TARBALL.partial" "$ROOTFS_TARBALL"
}

present="$(docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$TAG" 2>/dev/null || true)"
if [[ "$present" == "$DEFINITION" ]]; then
    echo "base-image: $TAG already present (definition $DEFINITION)"
    exit 0
fi
if [[ ! -s "$ROOTFS_TARBALL" ]]; then
    build_rootfs_tarball
fi
echo "base-image: importing $TAG"
# What python:3.12-slim sets that an imported root filesystem lacks.
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL $LABEL=$DEFINITION" \
    "$ROOTFS_TARBALL" "$TAG" >/dev/null
echo "base-image: $TAG has $(docker run --rm --network host "$TAG" sh -c 'python --version; pip --version | cut -d" " -f1-2')"
