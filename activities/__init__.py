"""Side effects, thin and idempotent, over the adapters in `baton/`; grouped by task queue."""

from activities.forge import set_commit_status
from activities.pipeline import build_image, publish_artifact, run_check
from baton.temporal import TaskQueues

ACTIVITIES = {
    TaskQueues.WORKFLOWS: [set_commit_status],
    TaskQueues.BUILD: [run_check, build_image, publish_artifact],
    TaskQueues.DEPLOY: [],
}
