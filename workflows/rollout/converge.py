"""Convergence: one cluster applies a GitOps revision, syncs it and is verified; `Clusters` does
that in every cluster of an environment that spans several (`environments[].clusters`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.deploy import (
        ApplyInput,
        VerifyInput,
        apply_manifests,
        request_reconcile,
        verify_endpoint,
    )
    from baton.models import Gate, RolloutInput, SyncEvent, SyncOutcome
    from baton.temporal import TaskQueues

from workflows.patches import patched
from workflows.record import Record, failure, last_failure
from workflows.retries import HEARTBEAT, RECONCILE, RETRY
from workflows.rollout.preflight import verification_broken
from workflows.rollout.steps import step
from workflows.rollout.sync_waiter import SyncWaiter

CLUSTERS = "environment-clusters"
"""Patch: an environment with `clusters` converges in each of them (stages `<cluster>: sync`)."""
RECONCILE_WITH_SYNC = "reconcile-with-sync"
"""Patch: the reconcile request runs while the sync gate begins its first look, not before it
(one round trip less: the request only hurries the cluster along, and the gate looks again)."""


@dataclass
class Convergence:
    """Has one cluster apply `revision`, waits for it to sync, then verifies; says what failed.

    Flux and the local runtime apply by themselves and are asked to reconcile now; without
    Flux (`sync.kind: apply`) Baton applies the manifests at `revision` itself. `input` is the
    rollout as the cluster sees it (its environment's `cluster`, `sync` and `verify`).
    """

    input: RolloutInput
    record: Record
    sync: SyncWaiter
    cluster: str | None = None  # named when the environment spans several clusters

    @property
    def where(self) -> str:
        """The environment (and cluster), for activity summaries."""
        env = self.input.environment.name
        return f"{env} ({self.cluster})" if self.cluster else env

    async def run(self, revision: str, check: VerifyInput, prefix: str = "") -> SyncOutcome:
        """Apply or reconcile, sync, verify, as stages named `prefix` + apply/sync/verify."""
        if self.input.environment.sync.kind == "apply":
            failed = await self._apply(revision, f"{prefix}apply")
            if failed:
                return SyncOutcome(synced=False, reason="failed", message=failed)
            synced = await self.sync.wait(revision, f"{prefix}sync")
        # Rollouts recorded before reconcile requests existed replay without one.
        elif patched("request-reconcile"):
            reconcile = asyncio.ensure_future(self._request_reconcile())
            if not patched(RECONCILE_WITH_SYNC):
                await reconcile
            synced = await self.sync.wait(revision, f"{prefix}sync")
            await reconcile
        else:
            synced = await self.sync.wait(revision, f"{prefix}sync")
        if not synced.synced:
            return synced.model_copy(update={"message": f"sync {synced.reason}: {synced.message}"})
        verified = await self._verify(check, f"{prefix}verify")
        if not verified.synced:
            return verified.model_copy(
                update={"message": f"verification failed: {verified.message}"}
            )
        return verified

    async def _apply(self, revision: str, name: str) -> str | None:
        """Apply the manifests at `revision` to the cluster; None, or what failed.

        Retried while the cluster is unreachable, for at most the sync timeout."""
        env = self.input.environment
        try:
            await step(
                self.record,
                name,
                apply_manifests,
                ApplyInput(rollout=self.input, revision=revision),
                summary=f"apply {revision[:12]} to {self.where}",
                schedule_to_close_timeout=timedelta(seconds=env.sync.timeout_s),
            )
        except ActivityError as err:
            if isinstance(err.cause, ActivityTimeoutError):
                seen = last_failure(err.cause)
                last = f"; last error: {seen}" if seen else ""
                return f"apply failed: not applied within {env.sync.timeout_s}s{last}"
            return f"apply failed: {failure(err)}"
        return None

    async def _request_reconcile(self) -> None:
        """Have the cluster apply the merge now; without it, sync waits for the next poll."""
        env = self.input.environment
        try:
            await workflow.execute_activity(
                request_reconcile,
                self.input,
                task_queue=TaskQueues.DEPLOY,
                start_to_close_timeout=timedelta(minutes=1),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=RECONCILE,
                summary=f"request a reconcile of {self.where}",
            )
        except ActivityError as err:
            self.record.note(
                f"reconcile request failed ({failure(err)}): sync waits for {env.sync.kind}'s own "
                "poll"
            )

    async def _verify(self, check: VerifyInput, name: str) -> SyncOutcome:
        verify = self.input.environment.verify
        if verify is None:
            return SyncOutcome(synced=True, reason="no verification configured")
        stage = self.record.begin(name)
        self.record.set_gate(
            Gate(
                kind="verification",
                environment=self.input.environment.name,
                description=f"checking {verify.url}",
                deadline=workflow.now() + timedelta(seconds=verify.timeout_s),
            )
        )
        result = await workflow.execute_activity(
            verify_endpoint,
            check,
            task_queue=TaskQueues.DEPLOY,
            start_to_close_timeout=timedelta(seconds=verify.timeout_s + 30),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=RETRY,
            summary=f"verify {verify.url}",
        )
        self.record.clear_gate()
        self.record.end(stage, "succeeded" if result.synced else "failed", result.message)
        return result


class Clusters:
    """An environment's clusters (`environments[].clusters`), each with its own sync waiter
    (its own events and polling) and verification. Empty for a one-cluster environment."""

    def __init__(self, input: RolloutInput, record: Record) -> None:
        self.record = record
        self.each: dict[str, Convergence] = {}
        if not input.environment.clusters:
            return
        for target in input.environment.targets:
            seen = input.model_copy(update={"environment": target})
            self.each[target.cluster] = Convergence(
                seen, record, SyncWaiter(seen, record), target.cluster
            )

    def add(self, event: SyncEvent) -> None:
        """A sync event, for the cluster it names (the one cluster when it names none)."""
        name = event.cluster
        if name is None and len(self.each) == 1:
            name = next(iter(self.each))
        cluster = self.each.get(name or "")
        if cluster is None:
            self.record.note(
                f"ignored sync event at {event.revision[:12]}: it names "
                + (f"cluster {name}, not one of " if name else "no cluster of ")
                + ", ".join(self.each)
            )
            return
        cluster.sync.add(event)

    def expect_merge(self) -> None:
        """Any status observed, or event received, before this instant predates the merge."""
        for cluster in self.each.values():
            cluster.sync.expect_merge()

    async def verification_broken(self) -> str | None:
        """Why one cluster's verification cannot tell a good deploy from a bad one, or None:
        each cluster's checked in turn, as `<cluster>: check verification`."""
        for name, cluster in self.each.items():
            if broken := await verification_broken(self.record, cluster.input, f"{name}: "):
                return f"{name}: {broken}"
        return None

    async def converge(self, revision: str, check: VerifyInput, prefix: str = "") -> SyncOutcome:
        """Every cluster at once, each to its end: synced when all of them are, else failed,
        saying which clusters failed and how (the rollback then reverts all of them)."""
        names = list(self.each)
        pending = set(names)

        async def one(name: str) -> SyncOutcome:
            cluster = self.each[name]
            seen = check.model_copy(update={"rollout": cluster.input})
            outcome = await cluster.run(revision, seen, f"{prefix}{name}: ")
            pending.discard(name)
            if pending:  # its gate is cleared: show what the environment still waits for
                self.record.set_gate(
                    Gate(
                        kind="sync",
                        environment=cluster.input.environment.name,
                        description=f"waiting for {', '.join(sorted(pending))} to sync and "
                        f"verify {revision[:12]}",
                        waiting_on=[f"cluster {n}" for n in sorted(pending)],
                    )
                )
            return outcome

        outcomes: list[SyncOutcome] = await asyncio.gather(*(one(name) for name in names))
        failed = [
            f"{name}: {o.message}" for name, o in zip(names, outcomes, strict=True) if not o.synced
        ]
        if failed:
            return SyncOutcome(synced=False, reason="failed", message="; ".join(failed))
        served = {o.revision for o in outcomes}
        return SyncOutcome(
            synced=True,
            revision=served.pop() if len(served) == 1 else None,
            reason=outcomes[0].reason,
            message="; ".join(
                f"{name}: {o.message or o.reason}" for name, o in zip(names, outcomes, strict=True)
            ),
        )
