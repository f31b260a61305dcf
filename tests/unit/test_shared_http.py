"""baton.shared_http: one client per process, shared by threads, with httpx.get's defaults (no
redirects followed, no cookies kept between calls); async clients with the same defaults."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from baton import shared_http


class Redirect(BaseHTTPRequestHandler):
    """`/old` redirects to `/new`; `/login` sets a session cookie; every answer's body is the
    Cookie header the request carried, or `ok` without one."""

    def do_GET(self) -> None:
        body = (self.headers.get("cookie") or "ok").encode()
        self.send_response(302 if self.path == "/old" else 200)
        self.send_header("Location", "/new")
        if self.path == "/login":
            self.send_header("Set-Cookie", "session=s3cret; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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


def test_a_cookie_one_answer_sets_is_not_sent_on_later_calls(server: str) -> None:
    """As with `httpx.get`, each call is on its own: a receiver's session is not kept, nor sent
    to another service on the same host."""
    login = shared_http.client().get(f"{server}/login", timeout=2)
    assert login.headers["set-cookie"].startswith("session=")
    assert shared_http.client().get(f"{server}/new", timeout=2).text == "ok"
    assert not shared_http.client().cookies


async def test_an_async_client_keeps_no_cookie_and_follows_no_redirect(server: str) -> None:
    async with shared_http.async_client() as http:
        await http.get(f"{server}/login", timeout=2)
        assert (await http.get(f"{server}/new", timeout=2)).text == "ok"
        moved = await http.get(f"{server}/old", timeout=2)
    assert (moved.status_code, moved.headers["location"]) == (302, "/new")


def test_a_kept_alive_connection_to_a_server_that_went_away_is_not_taken_for_an_answer() -> None:
    """An image test's container answered on a port and was removed: the next probe of that port
    (before the next container starts) must see nothing listening, not the pooled connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/healthz"

    accepted: list[socket.socket] = []

    def answer_once() -> None:
        connection, _ = listener.accept()
        accepted.append(connection)
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # kept alive

    served = threading.Thread(target=answer_once, daemon=True)
    served.start()
    assert shared_http.client().get(url, timeout=2).text == "ok"
    served.join()
    for gone in (*accepted, listener):  # the container goes: its connections and its port
        gone.close()
    with pytest.raises(httpx.ConnectError):
        shared_http.client().get(url, timeout=2)
