#!/usr/bin/env bash
# Builds the local base image that tests pass to app Dockerfiles as BASE_IMAGE, since Docker Hub's
# python images cannot be pulled here: a minimal Debian bookworm with python3, made by debootstrap
# from the machine's own apt mirror. Done once per engine; the root filesystem tarball is cached in
# .cache/ so a fresh engine only re-imports it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${BATON_BASE_IMAGE:-localhost/baton-python-base:bookworm}"
SUITE=bookworm
ROOTFS_TARBALL="$ROOT/.cache/baton-python-base-$SUITE.tar"

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
    debootstrap --variant=minbase --include=python3 "$SUITE" "$rootfs" "$mirror" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    mkdir -p "$(dirname "$ROOTFS_TARBALL")"
    tar -C "$rootfs" -cf "$ROOTFS_TARBALL.partial" .
    mv "$ROOTFS_TARBALL.partial" "$ROOTFS_TARBALL"
}

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "base-image: $TAG already present"
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
    "$ROOTFS_TARBALL" "$TAG" >/dev/null
echo "base-image: $TAG has $(docker run --rm --network host "$TAG" python3 --version)"
