"""Deterministic workflow code only: every side effect is an activity.

`change`, `pipelines`, `lane`, `images`, `reconcile` and the `rollout` package hold the workflows; `record` is the record
keeper every workflow shares, `lane_client` a change's side of the lane protocol, `retries` the
retry policies of all their activities.
"""

from workflows.change import ChangeWorkflow
from workflows.images import ImageRefresh
from workflows.lane import EnvironmentLane
from workflows.pipelines import CIPipeline, PullRequestPipeline
from workflows.reconcile import Reconcile
from workflows.rollout import EnvironmentRollout

WORKFLOWS = [
    ChangeWorkflow,
    PullRequestPipeline,
    CIPipeline,
    EnvironmentRollout,
    EnvironmentLane,
    ImageRefresh,
    Reconcile,
]
