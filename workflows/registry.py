"""Every workflow class, as workers register them (`WORKFLOWS`, also `workflows.WORKFLOWS`)."""

from workflows.batch import CIBatch
from workflows.change import ChangeWorkflow
from workflows.hold import EnvironmentHolds
from workflows.images import ImageRefresh
from workflows.lane import EnvironmentLane
from workflows.pipelines import CIPipeline, LongTests, PullRequestPipeline
from workflows.reconcile import Reconcile
from workflows.rollout import EnvironmentRollout

WORKFLOWS = [
    ChangeWorkflow,
    PullRequestPipeline,
    CIPipeline,
    LongTests,
    EnvironmentRollout,
    EnvironmentLane,
    EnvironmentHolds,
    ImageRefresh,
    CIBatch,
    Reconcile,
]
