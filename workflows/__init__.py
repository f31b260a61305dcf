"""Deterministic workflow code only: every side effect is an activity.

`change`, `batch`, `pipelines`, `lane`, `hold`, `images`, `reconcile` and the `rollout` package
hold the workflows; `record` is the record keeper every workflow shares, `lane_client` and
`hold_client` a change's side of the lane and holds protocols, `promotion` its walk along the
promotion graph, `retries` the retry policies of all their activities; `registry` lists them all.

Importing this package imports no workflow: Temporal's workflow sandbox runs every new workflow
(and every replay after a cache eviction) on a fresh import of the workflow's modules, this
package among them, so importing every workflow here cost each rollout the import of all the
others (bench.inflight, issue 18). `WORKFLOWS` is imported from `registry` when first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workflows.registry import WORKFLOWS

__all__ = ["WORKFLOWS"]


def __getattr__(name: str) -> Any:
    """`WORKFLOWS` on first use (PEP 562); any other missing name is an AttributeError, as
    `from workflows import record` needs to import the submodule."""
    if name == "WORKFLOWS":
        from workflows.registry import WORKFLOWS

        return WORKFLOWS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
