# Developer and CI entry points. Every target is safe to run again: it only does what is missing.
#   make install   Python 3.12 venv with the locked dependencies (uv)
#   make tools     helm and kubectl in .tools/bin
#   make docker    Docker engine + registry + local Python base image (root, Debian)
#   make test      all of the above, then the test suite (PYTEST_ARGS="-k ..." to narrow it)
#   make lint      ruff

PYTHON ?= python3
UV := $(PYTHON) -m uv
PYTEST_ARGS ?=

.PHONY: install tools docker test lint

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv
	$(UV) sync --frozen

tools:
	scripts/setup-tools.sh

docker:
	scripts/setup-docker.sh
	scripts/base-image.sh

test: install tools docker
	.venv/bin/pytest -q $(PYTEST_ARGS)

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
