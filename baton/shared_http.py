"""One HTTP client per process for Baton's one-off calls: readiness probes, verification polls,
Flux-format events, health checks, image tests, notifications, OIDC discovery.

`httpx.get`/`httpx.post` build a new client for each call, and with it a new TLS context
(certifi's bundle loaded again): ~48 ms of CPU per call on the embedded stack's 2 cores, 25× a
reused client (issue 18; `make bench`: bench/http.py). This client is built once, on first use,
and is safe to share between threads (httpx: "Client instances are thread-safe"). Its defaults
are `httpx.get`'s (TLS verified with certifi's bundle, environment proxies, no redirects
followed), and like `httpx.get` it keeps no cookie from one call to the next: a receiver's
`Set-Cookie` is never sent to it, or to another port of the same host, later. Each call passes its
own timeout.

A call that needs other TLS settings (a custom CA, client certificates) keeps its own client: a
client's TLS context is fixed when it is built. Async code owns an `async_client()` for the life
of its event loop (the API's lifespan): an `httpx.AsyncClient`'s connections belong to the loop
that opened them, so it cannot be one per process.
"""

from __future__ import annotations

import threading
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

_client: httpx.Client | None = None
_lock = threading.Lock()


def _no_cookies() -> CookieJar:
    """A cookie jar whose policy takes no cookie from any domain (so it sends none either); a
    `CookieJar`, which httpx keeps as given (an `httpx.Cookies` it copies into a default jar)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def client() -> httpx.Client:
    """The process's shared `httpx.Client`, created on first use."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = httpx.Client(cookies=_no_cookies())
    return _client


def async_client() -> httpx.AsyncClient:
    """A new `httpx.AsyncClient` with the shared client's defaults (no cookies kept), for async
    code to hold for its event loop's lifetime and close (`async with`)."""
    return httpx.AsyncClient(cookies=_no_cookies())
