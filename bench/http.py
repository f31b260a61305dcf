"""Benchmark: CPU per HTTP call, `httpx.get` (a new client and TLS context each call) against the
process's shared client (`baton.shared_http`), side by side.

A readiness probe, a verification poll and a Flux-format event are each one small HTTP call;
Baton makes them through `baton.shared_http`. Each round makes the same number of GETs to a local
HTTP server (127.0.0.1, in a thread) both ways, one after the other; process CPU time per call,
medians over rounds, and their ratio (shared / per-call client: lower is better). Prints one JSON
object.

    .venv/bin/python -m bench.http [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from baton import shared_http


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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

    per_call(url), shared(url)  # warm both up
    fresh, reused = [], []
    for _ in range(args.rounds):
        fresh.append(cpu_ms_per_call(per_call, url, args.calls))
        reused.append(cpu_ms_per_call(shared, url, args.calls))
    server.shutdown()
    fresh_ms, reused_ms = statistics.median(fresh), statistics.median(reused)
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
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
