#!/usr/bin/env bash
# The test suite (`make test`), in two phases: the unit and workflow tests on two processes
# (pytest-xdist, `--dist loadscope`: a module's tests stay together; each process starts its own
# Temporal dev server), then the end-to-end tests one at a time (each brings up a whole stack and
# needs the machine's two cores). Arguments go to both phases (`-k ...`, `-x`); with a test path
# among them, one plain run of what they name. Exits non-zero if a phase fails, or if neither ran
# a test (pytest's exit 5, nothing collected): a run that tested nothing never passes.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for arg in "$@"; do
    if [[ $arg == tests* ]]; then
        exec .venv/bin/pytest -q "$@"
    fi
done

ran=0
failed=0
phase() {
    .venv/bin/pytest -q "$@"
    local rc=$?
    case $rc in
        0) ran=1 ;;
        5) ;;  # this phase has nothing that matches; the other may
        *) failed=$rc ;;
    esac
}
phase -n "${PYTEST_WORKERS:-2}" --dist loadscope tests/unit tests/workflows "$@"
phase tests/e2e "$@"

if ((failed)); then
    exit "$failed"
fi
if ((!ran)); then
    echo "run-tests: no test ran (nothing collected in either phase)" >&2
    exit 5
fi
