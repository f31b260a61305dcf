"""What the hosted forge adapters share: one REST client with authentication, rate-limit waits and
errors mapped to exceptions that say what to do, plus the helpers their models need.

Errors are `ForgeError`s that say whether retrying can fix them: those it cannot (a rejected
token, a missing repository) stop the activity's retries; rate limits and outages are retried,
after the wait the forge asked for.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from baton.forges.base import ForgeError, RepositoryNotFound

log = logging.getLogger("baton.forges")

MAX_WAIT_S = 60.0
"""Longest rate-limit wait done in place; a longer one is left to the activity's next retry."""
DEFAULT_LIMIT_WAIT_S = 60.0
"""GitHub's advice when a limit is hit without saying for how long: wait at least a minute."""
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class ForgeRequestFailed(ForgeError):
    """A forge API call failed; `status` is the HTTP status (None when there was no answer)."""

    retryable = False

    def __init__(self, message: str, status: int | None = None, wait_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.next_retry_delay = timedelta(seconds=wait_s) if wait_s else None


class TokenRejected(ForgeRequestFailed):
    """401: the token is missing, wrong or expired."""


class PermissionDenied(ForgeRequestFailed):
    """403 without a rate limit: the token is valid but lacks a permission."""


class ResourceNotFound(ForgeRequestFailed):
    """404: the repository, pull request or branch does not exist (or the token cannot see it)."""


class RequestRejected(ForgeRequestFailed):
    """Any other 4xx: the forge refused the request as made; `detail` is the forge's own reason."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message, status)
        self.detail = detail


class RateLimited(ForgeRequestFailed):
    """The forge's rate limit is exhausted for longer than Baton waits in place."""

    retryable = True


class ForgeUnavailable(ForgeRequestFailed):
    """No answer, or a 5xx: worth retrying later."""

    retryable = True


class ForgeAPI:
    """One forge's REST API. `headers` carry the authentication; they are never logged."""

    def __init__(
        self,
        forge: str,
        base_url: str,
        headers: Mapping[str, str],
        *,
        token_env: str | None = None,
        params: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
        max_wait_s: float = MAX_WAIT_S,
        attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`forge` names it in messages; `params` go with every request (Azure's api-version);
        `attempts` bounds the calls per request when rate limited."""
        self.forge = forge
        self.token_env = token_env
        self.max_wait_s = max_wait_s
        self.attempts = attempts
        self.sleep = sleep
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Accept": "application/json", "User-Agent": "baton", **headers},
            params=params,
            timeout=timeout_s,
            transport=transport,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """Send a request; 2xx answers are returned, everything else raises a `ForgeRequestFailed`."""
        where = f"{method} {path}"
        attempt = 1
        while True:
            try:
                response = self.client.request(method, path, params=params, json=json)
            except httpx.HTTPError as exc:
                raise ForgeUnavailable(
                    f"{self.forge} did not answer {where}: {type(exc).__name__}: {exc}"
                ) from None
            wait = rate_limit_wait(response)
            if wait is None:
                return self._check(response, where)
            if wait > self.max_wait_s or attempt == self.attempts:
                raise RateLimited(
                    f"{self.forge} rate limit reached on {where}: retry in {wait:.0f}s",
                    response.status_code,
                    wait_s=max(wait, 1.0),
                )
            log.info("%s rate limit on %s: waiting %.1fs", self.forge, where, wait)
            self.sleep(wait)
            attempt += 1

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request`, decoded; an empty body is None."""
        response = self.request(method, path, **kwargs)
        return response.json() if response.content.strip() else None

    def in_repository(self, repo: str, root: str, method: str, path: str, **kwargs: Any) -> Any:
        """`json` for a call under the repository path `root`; when the repository itself is
        missing, `RepositoryNotFound` (a 404 alone does not say which part is missing)."""
        try:
            return self.json(method, root + path, **kwargs)
        except ResourceNotFound:
            if path and self._exists(root):
                raise
            raise RepositoryNotFound(repo) from None

    def _exists(self, path: str) -> bool:
        try:
            self.request("GET", path)
        except ResourceNotFound:
            return False
        return True

    def pages(
        self, path: str, params: Mapping[str, Any] | None = None, key: str | None = None
    ) -> Iterator[Any]:
        """Every item of a list endpoint (or of the list in each page's field `key`), following
        `Link: <...>; rel="next"` (GitHub, Gitea)."""
        url: str | None = path
        while url is not None:
            response = self.request("GET", url, params=params)
            data = response.json()
            yield from ((data.get(key) or []) if key else data)
            match = _NEXT_LINK.search(response.headers.get("link", ""))
            url, params = (match.group(1), None) if match else (None, None)

    def _check(self, response: httpx.Response, where: str) -> httpx.Response:
        status = response.status_code
        # Azure DevOps answers a bad PAT with 203 and a sign-in page instead of 401.
        if 200 <= status < 300 and status != 203:
            return response
        detail = error_detail(response)
        if status in (401, 203):
            source = f" (now {self.token_env})" if self.token_env else ""
            if "authorization" in self.client.headers:
                problem = f"token rejected by {self.forge} on {where}"
            else:
                problem = f"no token for {self.forge}, which {where} needs"
            raise TokenRejected(
                f"{problem}: check forge.credentials.token_env{source} or token_file", 401
            )
        if status == 403:
            raise PermissionDenied(
                f"{self.forge} refused {where}: the token lacks a permission ({detail})", status
            )
        if status == 404:
            raise ResourceNotFound(f"{self.forge} has no {where.split(' ', 1)[1]}", status)
        if status >= 500:
            raise ForgeUnavailable(f"{self.forge} failed on {where}: {status} {detail}", status)
        raise RequestRejected(f"{self.forge} refused {where}: {status} {detail}", status, detail)


def rate_limit_wait(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds to wait when `response` says a rate limit was hit, else None.

    `retry-after` (seconds or an HTTP date) wins; otherwise `x-ratelimit-reset` (epoch seconds) when
    `x-ratelimit-remaining` is 0; a bare 429 waits a minute. A 403 without these is a permission
    problem, not a limit.
    """
    if response.status_code not in (403, 429):
        return None
    now = time.time() if now is None else now
    headers = response.headers
    if (retry_after := headers.get("retry-after")) is not None:
        return max(_seconds_until(retry_after, now), 0.0)
    if headers.get("x-ratelimit-remaining") == "0" and (reset := headers.get("x-ratelimit-reset")):
        try:
            return max(float(reset) - now, 0.0) + 1.0
        except ValueError:
            return DEFAULT_LIMIT_WAIT_S
    return DEFAULT_LIMIT_WAIT_S if response.status_code == 429 else None


def _seconds_until(value: str, now: float) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError):
        return DEFAULT_LIMIT_WAIT_S


def error_detail(response: httpx.Response) -> str:
    """The forge's own reason from an error body (`message`, plus GitHub's `errors[].message`)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:200]
    parts = [str(body.get("message") or "")]
    for error in body.get("errors") or []:
        if isinstance(error, dict) and error.get("message"):
            parts.append(str(error["message"]))
    return "; ".join(p for p in parts if p)[:500] or response.reason_phrase


def with_credentials(url: str, username: str, token: str | None) -> str:
    """`url` with `username:token` as userinfo when it is http(s) and a token is set.

    git needs the token to push; it lives only in this URL (GitPython redacts it from errors).
    """
    parts = urlsplit(url)
    if token is None or parts.scheme not in ("http", "https"):
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    userinfo = f"{quote(username, safe='')}:{quote(token, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def parse_time(value: Any) -> datetime:
    """A forge timestamp (ISO 8601, `Z` or offset); now when absent or unreadable."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return datetime.now(UTC)


def owner_and_name(forge: str, repo: str) -> tuple[str, str]:
    """Split `OWNER/NAME`; hosted forges need both parts."""
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise ForgeError(
            f"repository {repo!r} is not OWNER/NAME: on {forge}, name apps[].repo and gitops.repo "
            "with their owner, e.g. acme/sample-app"
        )
    return owner, name


def clip_body(body: str, limit: int) -> str:
    """`body` cut to `limit` characters, keeping its last paragraph (Baton's trailer) intact."""
    if len(body) <= limit:
        return body
    head, _, tail = body.rstrip().rpartition("\n\n")
    marker = "\n\n… (cut to fit the forge's limit)\n\n"
    room = limit - len(tail) - len(marker)
    if not head or room < 0:
        return body[:limit]
    return head[:room] + marker + tail


class HostedForge:
    """What the hosted adapters share: their `ForgeAPI`, calls under a repository's API path, and
    each repository's clone URL, read once and carrying the token for git over HTTPS. Class
    attributes and `auth_headers` hold what each forge does its own way."""

    name: ClassVar[str]
    clone_user: ClassVar[str]
    """The user name git sends with the token when the configuration names none."""
    clone_url_field: ClassVar[str]
    """The field of the API's repository resource that holds its HTTPS clone URL."""
    api_params: ClassVar[dict[str, str] | None] = None
    """Query parameters every API call carries."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        username: str | None = None,
        token_env: str | None = None,
        **api_options: Any,
    ) -> None:
        """`token` authenticates API calls and git pushes; `api_options` go to `ForgeAPI`."""
        self.api = ForgeAPI(
            self.name,
            url,
            self.auth_headers(token),
            token_env=token_env,
            params=self.api_params,
            **api_options,
        )
        self._token = token
        self._git_user = username or self.clone_user
        self._clone_urls: dict[str, str] = {}

    def auth_headers(self, token: str | None) -> dict[str, str]:
        """Headers that authenticate API calls with `token` (none without one)."""
        raise NotImplementedError

    def clone_url(self, repo: str) -> str:
        """The repository's clone URL from the API, with the token for git over HTTPS."""
        if repo not in self._clone_urls:
            data = self._call(repo, "GET", "")
            self._clone_urls[repo] = with_credentials(
                data[self.clone_url_field], self._git_user, self._token
            )
        return self._clone_urls[repo]

    def _root(self, repo: str) -> str:
        """The API path of `repo`; `_call` paths are relative to it."""
        raise NotImplementedError

    def _call(self, repo: str, method: str, path: str, **kwargs: Any) -> Any:
        return self.api.in_repository(repo, self._root(repo), method, path, **kwargs)
