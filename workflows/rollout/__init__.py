"""EnvironmentRollout and the helper objects it delegates to, each in a file named after it.

`workflow` reads as the process (messages, run, merge, converge); `approvals`, `freeze_gate`,
`sync_waiter` and `rollback` hold the mechanisms with state of their own; `steps` runs deploy
activities as stages of the timeline; `texts` writes the GitOps PR bodies.
"""

from workflows.rollout.workflow import EnvironmentRollout

__all__ = ["EnvironmentRollout"]
