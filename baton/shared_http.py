"""One HTTP client per process for Baton's one-off calls: readiness probes, verification polls,
Flux-format events, health checks.

`httpx.get`/`httpx.post` build a new client for each call, and with it a new TLS context
(certifi's bundle loaded again): ~48 ms of CPU per call on the embedded stack's 2 cores, 25× a
reused client (issue 18; `make bench`: bench/http.py). This client is built once, on first use,
and is safe to share between threads (httpx: "Client instances are thread-safe"). Its defaults
are `httpx.get`'s (TLS verified, environment proxies, no redirects followed); each call passes
its own timeout.
"""

from __future__ import annotations

import threading

import httpx

_client: httpx.Client | None = None
_lock = threading.Lock()


def client() -> httpx.Client:
    """The process's shared `httpx.Client`, created on first use."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = httpx.Client()
    return _client
