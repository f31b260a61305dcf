"""ImageRefresh: re-read every mirrored image's source; where a new digest arrived (an upstream
security update), open the PRs that move its pins. Started by the `images-refresh` Schedule."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.images import propose_pin_bumps, refresh_mirrors
    from baton.mirror import MirroredImage
    from baton.temporal import TaskQueues, WorkflowTypes

from workflows.retries import CHECK_RETRY, HEARTBEAT


@workflow.defn(name=WorkflowTypes.IMAGE_REFRESH)
class ImageRefresh:
    """One refresh: mirror what changed, then a bump PR per app repository that pins it."""

    @workflow.run
    async def run(self) -> list[MirroredImage]:
        images = await workflow.execute_activity(
            refresh_mirrors,
            task_queue=TaskQueues.BUILD,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=CHECK_RETRY,
            summary="re-read mirrored images' sources",
        )
        refreshed = []
        for image in images:
            if image.update_waiting:
                prs = await workflow.execute_activity(
                    propose_pin_bumps,
                    image,
                    task_queue=TaskQueues.BUILD,
                    start_to_close_timeout=timedelta(minutes=10),
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=CHECK_RETRY,
                    summary=f"bump pins to {image.image}",
                )
                image = image.model_copy(update={"bump_prs": prs})
            refreshed.append(image)
        return refreshed
