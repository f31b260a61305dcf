"""Deterministic workflow code only: every side effect is an activity.

`change`, `batch`, `pipelines`, `lane`, `hold`, `images`, `reconcile` and the `rollout` package
hold the workflows; `record` is the record keeper every workflow shares, `lane_client` and
`hold_client` a change's side of the lane and holds protocols, `promotion` its walk along the
promotion graph, `retries` the retry policies of all their activities.
"""

from workflows.batch import CIBatch
from workflows.change import ChangeWorkflow
from workflows.hold import EnvironmentHolds
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
    EnvironmentHolds,
    ImageRefresh,
    CIBatch,
    Reconcile,
]
