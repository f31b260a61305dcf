"""The `baton` command: the embedded stack, changes and decisions, the local forge."""
