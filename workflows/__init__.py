"""Deterministic workflow code only: every side effect is an activity."""

from workflows.change import ChangeWorkflow
from workflows.lane import EnvironmentLane
from workflows.pipelines import CIPipeline, PullRequestPipeline
from workflows.rollout import EnvironmentRollout

WORKFLOWS = [ChangeWorkflow, PullRequestPipeline, CIPipeline, EnvironmentRollout, EnvironmentLane]
