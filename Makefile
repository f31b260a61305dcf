# Developer and CI entry points. Every target is safe to run again: it only does what is missing.
#   make install   Python 3.12 venv with the locked dependencies (uv)
#   make tools     helm and kubectl in .tools/bin
#   make docker    Docker engine + registry + local Python base image (root, Debian)
#   make browser   Debian's Chromium, which the board's browser tests drive (root, Debian)
#   make test      all of the above, then the test suite (scripts/run-tests.sh: unit and workflow
#                  tests on 2 processes, then end-to-end; PYTEST_ARGS="-k ..." to narrow it)
#   make demo      all of the above but the tests and the browser, then one change from PR to
#                  prod (baton demo; DEMO_ARGS= to approve on the board yourself)
#   make bench     every benchmark in bench/ (not part of make test), results in bench/results/
#   make lint      ruff, the layer contracts (import-linter) and mypy (CI runs it before the tests)

PYTHON ?= python3
UV := $(PYTHON) -m uv
PYTEST_ARGS ?=
DEMO_ARGS ?= --auto-approve
# Nothing can be pulled from Docker Hub here: app images build FROM the local base image.
export BATON_BASE_IMAGE ?= localhost/baton-python-base:bookworm

.PHONY: install tools docker browser test demo lint bench

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv
	$(UV) sync --frozen

tools:
	scripts/setup-tools.sh

docker:
	scripts/setup-docker.sh
	scripts/base-image.sh

browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

test: install tools docker browser
	scripts/run-tests.sh $(PYTEST_ARGS)

demo: install tools docker
	.venv/bin/baton demo $(DEMO_ARGS)

bench: install tools
	@command -v hyperfine >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hyperfine; }
	.venv/bin/python -m bench.run $(BENCH)

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports
	.venv/bin/mypy
