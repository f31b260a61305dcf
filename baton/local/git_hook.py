"""The local forge's post-receive hook: `python -m baton.local.git_hook ROOT REPO`.

git runs it after a push has updated the refs, with `<old> <new> <ref>` lines on stdin. It reads
the webhook URL from ROOT/forge.json and the secret from `Settings()` (BATON_WEBHOOK_SECRET,
BATON_WEBHOOK_SECRET_FILE or the data directory), so no secret is ever written into a repository.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from baton.local.forge import LocalForge, RefUpdate, read_webhook_url
from baton.settings import Settings


def main(argv: list[str]) -> int:
    """Record the push and deliver its webhooks; always 0, since the refs are already updated."""
    root, repo = Path(argv[0]), argv[1]
    updates = [RefUpdate(*line.split()) for line in sys.stdin if line.strip()]
    try:
        forge = LocalForge(
            root,
            webhook_url=read_webhook_url(root),
            webhook_secret=Settings().webhook_secret,
            user=getpass.getuser(),
        )
        forge.record_push(repo, updates)
    except Exception as exc:  # noqa: BLE001 - whatever goes wrong, the push itself succeeded
        print(f"baton forge: push not recorded: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
