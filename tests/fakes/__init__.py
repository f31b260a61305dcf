"""Fakes of what Baton talks to (forges, the Kubernetes API, Flux), served for real on loopback."""

from __future__ import annotations

from typing import Self


class Lifecycle:
    """A fake that runs between `start()` and `stop()`; `with` does both."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
