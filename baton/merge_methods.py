"""How a pull request lands, without the configuration's imports (the CLI's `forge pr merge`
option needs the type at start-up; `baton.config` re-exports it)."""

from __future__ import annotations

from typing import Literal

MergeMethod = Literal["merge", "squash", "rebase", "fast-forward"]
"""How a pull request lands on its base branch: a merge commit, one squashed commit, its commits
rebased onto the base, or the base moved to its head (only when the head descends from the base)."""
