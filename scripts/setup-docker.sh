#!/usr/bin/env bash
# Installs the Docker engine, the CNCF registry, htpasswd, debootstrap and skopeo (image mirroring)
# from Debian (run as root), then starts dockerd if it is not answering. Safe to run again: it
# installs only what is missing and leaves a running engine alone. The registry is not started
# here: tests start their own.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_FILE="$ROOT/.cache/dockerd.log"
PACKAGES=(docker.io docker-registry apache2-utils debootstrap docker-compose skopeo)
START_TIMEOUT=60

missing_packages() {
    local package
    for package in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
            echo "$package"
        fi
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        echo "setup-docker: ${PACKAGES[*]} already installed"
        return
    fi
    echo "setup-docker: apt-get install ${missing[*]}"
    # Package scripts must not start the stock services: a dockerd with its default bridge and
    # iptables rules, or the packaged registry on :5000. A policy-rc.d that exits 101 forbids it.
    local policy=/usr/sbin/policy-rc.d
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' RETURN
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

start_dockerd() {
    if docker info >/dev/null 2>&1; then
        echo "setup-docker: engine already running"
        return
    fi
    # A dockerd that was killed leaves its pid file behind, and a new one refuses to start.
    local pid_file=/var/run/docker.pid
    if [[ -f "$pid_file" ]] && ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        rm -f "$pid_file"
    fi
    mkdir -p "$(dirname "$LOG_FILE")"
    echo "setup-docker: starting dockerd (log: $LOG_FILE)"
    # No bridge and no iptables: containers and builds use the host network only.
    setsid dockerd --bridge=none --iptables=false --ip-masq=false </dev/null >>"$LOG_FILE" 2>&1 &
    local waited=0
    until docker info >/dev/null 2>&1; do
        if ((waited >= START_TIMEOUT)); then
            echo "setup-docker: dockerd did not answer within ${START_TIMEOUT}s; last log lines:" >&2
            tail -n 20 "$LOG_FILE" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

install_packages
start_dockerd
echo "setup-docker: $(docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}')"
