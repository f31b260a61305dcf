"""Workflow modules compiled once per worker process, not once per workflow run.

Temporal's sandbox runs every new workflow (and every replay after a cache eviction) on a fresh
import of its modules. Where no bytecode is cached on disk (`PYTHONDONTWRITEBYTECODE`, or a source
tree the worker's user cannot write, as in Baton's image) each of those imports compiled the
workflow's 15 modules from source again: about half of a rollout's first workflow task
(`bench.orchestration`, issue 18). `install` keeps the compiled code of the `workflows` package in
memory, keyed by the source it was compiled from, so an edited file is compiled afresh; each import
still runs the module's code in the sandbox's own namespace.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from types import CodeType, ModuleType
from typing import Any

PACKAGES = ("workflows",)
"""The top-level packages whose modules the sandbox imports afresh for each run."""

_COMPILED: dict[tuple[str, bytes], CodeType] = {}


class _CompiledOnce(SourceFileLoader):
    """A source loader that compiles a module's source once per process."""

    def source_to_code(self, data: Any, path: Any, *, _optimize: int = -1) -> CodeType:  # type: ignore[override]
        key = (str(path), bytes(data))
        code = _COMPILED.get(key)
        if code is None:
            code = _COMPILED[key] = super().source_to_code(data, path, _optimize=_optimize)
        return code


class _Finder(MetaPathFinder):
    """Finds `PACKAGES`' modules as the path finder does, loading their source `_CompiledOnce`."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] not in PACKAGES:
            return None
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is not None and type(spec.loader) is SourceFileLoader:
            spec.loader = _CompiledOnce(spec.loader.name, spec.loader.path)
        return spec


def install() -> None:
    """Compile the workflow modules once in this process (idempotent)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
