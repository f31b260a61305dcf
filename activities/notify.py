"""Notification activities: a rollout's events posted to the configured chats and webhooks."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio import activity

from activities.context import current
from activities.errors import typed_errors
from baton.config import NotificationConfig
from baton.notify import Notification, SentLog, deliver
from baton.pr_comment import board_link


class NotifyInput(BaseModel):
    """The targets (by kind and variable names only: no URL, no secret) and the event."""

    targets: list[NotificationConfig]
    notification: Notification


@activity.defn
@typed_errors
async def send_notification(input: NotifyInput) -> int:
    """Post the event to every target that wants it and has not taken it yet (a retry after a
    crash skips those that have); how many were posted to now. Where the workers know the
    board's URL (BATON_API_BASE), the event links the change's page there, not the Temporal UI."""
    context = current()
    note, board = input.notification, context.settings.api_base
    if board:
        note = note.model_copy(update={"url": board_link(board, note.change_id)})
    log = SentLog(context.stores.records)
    return len(await asyncio.to_thread(deliver, input.targets, note, log))
