"""The grammar of change ids, without Temporal: what the CLI checks before it calls the API.

`baton.temporal` re-exports `CHANGE_KEY`; this module imports nothing, so a command line that only
validates an id does not load the Temporal client.
"""

from __future__ import annotations

CHANGE_KEY = (
    r"^([0-9]+|(push|batch)-[0-9a-f]{12}|promote-[0-9a-f]{12}-[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"
)
"""A change's key after `change/<app>/`: its PR number, `push-<sha12>` (`push_change_id`),
`batch-<sha12>` (`batch_change_id`) or `promote-<sha12>-<env>` (`promote_change_id`)."""
