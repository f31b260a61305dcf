"""The CLI's side of Baton's REST API (/api/v1): decisions go through it with the caller's token.

The credential is `$BATON_TOKEN`, else the token `baton login` stored (mode 0600) in
`$XDG_CONFIG_HOME/baton/token` (default `~/.config/baton/token`). The API's answers become the
same Baton errors the API raised (401 Unauthenticated, 403 PolicyViolation, 404 NotFound, 409 Refused, ...), so
the CLI shows them as one line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from baton.change_ids import CHANGE_KEY
from baton.errors import BadRequest, BatonError, InfrastructureError, NotFound, Unauthenticated
from baton.holds import Hold
from baton.settings import Settings

NO_CREDENTIAL = (
    "no credential: set BATON_TOKEN or run `baton login` (an administrator creates tokens "
    "with `baton token create --user NAME`)"
)


class ApiUnavailable(InfrastructureError):
    """Baton's API does not answer."""


def token_file() -> Path:
    """Where `baton login` keeps the caller's token."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "baton" / "token"


def stored_token() -> str | None:
    """$BATON_TOKEN, else the token `baton login` stored, else None."""
    if token := os.environ.get("BATON_TOKEN", "").strip():
        return token
    path = token_file()
    return path.read_text().strip() or None if path.is_file() else None


def store_token(token: str) -> Path:
    """Keep `token` for later commands, readable by its owner only (0600)."""
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token.strip() + "\n")
    os.chmod(path, 0o600)
    return path


class RolloutContent(BaseModel):
    """What a rollout's approval is about: its rendered content hash and GitOps PR head."""

    content_hash: str | None = None
    head: str | None = None


def error_class(status: int) -> type[BatonError]:
    """The Baton error an API answer with HTTP `status` (>= 300) stands for.

    `baton.changes` and `baton.policy` (Temporal, the models) are imported only for the answers
    they name (409, 403), so a command never pays for them at start-up.
    """
    if status == 403:
        from baton.policy import PolicyViolation

        return PolicyViolation
    if status == 409:
        from baton.changes import Refused

        return Refused
    errors: dict[int, type[BatonError]] = {
        400: BadRequest,
        401: Unauthenticated,
        404: NotFound,
        413: BadRequest,
        422: BadRequest,
        429: Unauthenticated,
    }
    return errors.get(status, ApiUnavailable)


class BatonApi:
    """A caller of /api/v1 with one credential."""

    def __init__(
        self,
        token: str | None = None,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = Settings()
        self.base_url = (base_url or settings.api_base or settings.api_url).rstrip("/")
        self.token = token if token is not None else stored_token()
        self.transport = transport
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        """One HTTP client for all of this caller's requests (its TLS context built once)."""
        if self._http is None:
            self._http = httpx.Client(transport=self.transport, timeout=60)
        return self._http

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer of `method /api/v1{path}`; a Baton error for any refusal."""
        if not self.token:
            raise Unauthenticated(NO_CREDENTIAL)
        url = f"{self.base_url}/api/v1{path}"
        try:
            answer = self.http.request(
                method, url, json=body, headers={"Authorization": f"Bearer {self.token}"}
            )
        except httpx.HTTPError as exc:
            raise ApiUnavailable(
                f"cannot reach Baton's API at {self.base_url} ({exc}): start it with "
                "`baton dev up` or set BATON_API_BASE"
            ) from None
        if answer.status_code < 300:
            return answer.json()
        try:
            message = answer.json().get("error") or answer.text
        except ValueError:
            message = answer.text[:300]
        raise error_class(answer.status_code)(message)

    def me(self) -> dict[str, Any]:
        return self.call("GET", "/me")

    def content(self, change: str, environment: str) -> RolloutContent:
        """The content the change's rollout into `environment` asks approval for, as published."""
        from baton.models import Gate  # not baton.changes' PublishedGate: no Temporal client

        app, pr = _parts(change)
        view = self.call("GET", f"/changes/{app}/{pr}")
        for published in view.get("gates", []):
            gate = Gate.model_validate(published["gate"])
            if gate.kind == "approval" and gate.environment == environment:
                return RolloutContent(content_hash=gate.content_hash, head=gate.head)
        return RolloutContent()

    def decide(self, change: str, environment: str, action: str, body: dict[str, Any]) -> str:
        """approve, reject or override-freeze the change's rollout into `environment`."""
        app, pr = _parts(change)
        path = f"/changes/{app}/{pr}/rollouts/{environment}/{action}"
        return self.call("POST", path, body)["message"]

    def abort(self, change: str, reason: str) -> str:
        app, pr = _parts(change)
        return self.call("POST", f"/changes/{app}/{pr}/abort", {"reason": reason})["message"]

    def hold(self, environment: str, app: str | None, reason: str) -> Hold:
        """Stop automatic promotion into `environment` (for `app`, or every app)."""
        body = {"app": app, "reason": reason}
        return Hold.model_validate(self.call("POST", f"/environments/{environment}/hold", body))

    def unhold(self, environment: str, app: str | None) -> Hold:
        """Lift the hold on `environment` (for `app`, or the one on every app)."""
        answer = self.call("POST", f"/environments/{environment}/unhold", {"app": app})
        return Hold.model_validate(answer)

    def promote(self, app: str, commit: str, environment: str) -> str:
        """Deploy the artifact CI built for `commit` into `environment`; the answer's message."""
        body = {"commit": commit, "environment": environment}
        return self.call("POST", f"/apps/{app}/promote", body)["message"]

    def retry(self, change: str, environment: str) -> str:
        app, pr = _parts(change)
        body = {"environment": environment}
        return self.call("POST", f"/changes/{app}/{pr}/retry", body)["message"]

    def holds(self) -> list[Hold]:
        return [Hold.model_validate(h) for h in self.call("GET", "/holds")]


def _parts(change: str) -> tuple[str, str]:
    """`change/app/7` or `app/7` as (app, "7"), `change/app/push-<sha12>` as (app,
    "push-<sha12>"), likewise `batch-<sha12>`; BadRequest for anything else."""
    parts = change.removeprefix("change/").split("/")
    if len(parts) != 2 or not re.match(CHANGE_KEY, parts[1]):
        raise BadRequest(
            f"{change!r} is not a change id: give change/APP/PR, change/APP/push-SHA12, "
            "change/APP/batch-SHA12 or change/APP/promote-SHA12-ENV, "
            "e.g. change/web/7"
        )
    return parts[0], parts[1]
