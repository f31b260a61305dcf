"""baton.shared_http: one client per process, shared by threads, with httpx.get's defaults."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from baton import shared_http


class Redirect(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302 if self.path == "/old" else 200)
        self.send_header("Location", "/new")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    http = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_address[1]}"
    http.shutdown()


def test_every_thread_gets_the_same_client_and_its_calls_answer(server: str) -> None:
    with ThreadPoolExecutor(8) as pool:
        clients = list(pool.map(lambda _: shared_http.client(), range(32)))
        answers = list(pool.map(lambda _: shared_http.client().get(f"{server}/new"), range(32)))
    assert {id(c) for c in clients} == {id(shared_http.client())}
    assert {a.status_code for a in answers} == {200}


def test_it_answers_as_httpx_get_does_without_following_redirects(server: str) -> None:
    shared = shared_http.client().get(f"{server}/old", timeout=2)
    once = httpx.get(f"{server}/old", timeout=2)
    assert (shared.status_code, shared.headers["location"]) == (302, "/new")
    assert (once.status_code, once.headers["location"]) == (302, "/new")
