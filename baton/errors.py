"""Errors a user can hit. Each message names the problem and the fix."""


class BatonError(Exception):
    """Base class for errors that are shown to the user as one line, never a traceback."""


class ToolNotFound(BatonError):
    """A command-line tool Baton needs is neither in the tools directory nor on PATH."""

    def __init__(self, name: str, searched: str) -> None:
        super().__init__(
            f"{name} not found (looked in {searched} and on PATH): run `make tools` "
            f"or put {name} on PATH"
        )
        self.name = name
