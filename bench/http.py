"""Benchmark: CPU per HTTP call, `httpx.get` (a new client and TLS context each call) against the
process's shared client (`baton.shared_http`), side by side; and one of Baton's paths through it,
a signed webhook notification (`baton.notify.post`), against the same request by `httpx.post`.

A readiness probe, a verification poll, a Flux-format event, an image test's probe and a
notification are each one small HTTP call; Baton makes them through `baton.shared_http`. Each
round makes the same number of calls to a local HTTP server (127.0.0.1, in a thread) each way,
one after the other; process CPU time per call, medians over rounds, and their ratios (shared /
per-call client: lower is better). Prints one JSON object.

    .venv/bin/python -m bench.http [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from baton import notify, shared_http
from baton.config import NotificationConfig

WEBHOOK = NotificationConfig(
    kind="webhook", url_env="BENCH_WEBHOOK_URL", secret_env="BENCH_WEBHOOK_SECRET"
)
ROLLOUT = "rollout/web/prod/" + "f" * 40
NOTE = notify.Notification.model_validate(
    {"id": f"{ROLLOUT}/run-1/deployed", "event": "deployed", "rollout_id": ROLLOUT}
    | {"app": "web", "environment": "prod", "change_id": "change/web/7", "commit": "f" * 40}
)


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


def cpu_ms_per_call(get: Callable[[str], httpx.Response], url: str, calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        assert get(url).status_code == 200
    return (time.process_time() - started) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/healthz"

    def per_call(u: str) -> httpx.Response:
        return httpx.get(u, timeout=5)

    def shared(u: str) -> httpx.Response:
        return shared_http.client().get(u, timeout=5)

    # The notification as it went before (httpx.post) and as Baton sends it now.
    os.environ.update(BENCH_WEBHOOK_URL=url, BENCH_WEBHOOK_SECRET="bench")
    body = json.dumps(notify.payload(WEBHOOK, NOTE)).encode()
    headers = {
        "content-type": "application/json",
        "x-baton-signature-256": notify.sign("bench", body),
    }

    def notify_per_call(u: str) -> httpx.Response:
        return httpx.post(u, content=body, headers=headers, timeout=notify.TIMEOUT_S)

    def notify_shared(u: str) -> httpx.Response:
        notify.post(WEBHOOK, NOTE)  # raises unless the receiver took it
        return httpx.Response(200)

    ways = [per_call, shared, notify_per_call, notify_shared]
    for way in ways:  # warm each up
        way(url)
    per_round: dict[Callable, list[float]] = {way: [] for way in ways}
    for _ in range(args.rounds):
        for way in ways:
            per_round[way].append(cpu_ms_per_call(way, url, args.calls))
    server.shutdown()
    fresh_ms, reused_ms, post_ms, notify_ms = (statistics.median(per_round[w]) for w in ways)
    print(
        json.dumps(
            {
                "benchmark": "http.cpu_per_call",
                "calls": args.calls,
                "rounds": args.rounds,
                "baseline": "httpx.get (new client per call)",
                "httpx_get_cpu_ms": round(fresh_ms, 2),
                "shared_client_cpu_ms": round(reused_ms, 2),
                "ratio": round(reused_ms / fresh_ms, 3),
                "notify_baseline": "httpx.post of the same signed webhook notification",
                "httpx_post_cpu_ms": round(post_ms, 2),
                "notify_post_cpu_ms": round(notify_ms, 2),
                "notify_ratio": round(notify_ms / post_ms, 3),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
