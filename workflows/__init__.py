"""Deterministic workflow code only: every side effect is an activity."""

from workflows.change import ChangeWorkflow
from workflows.pipelines import CIPipeline, PullRequestPipeline

WORKFLOWS = [ChangeWorkflow, PullRequestPipeline, CIPipeline]
