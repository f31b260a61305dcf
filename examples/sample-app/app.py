"""sample-app: a tiny web service that reports which build and environment it is running."""

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

APP_NAME = "sample-app"
VERSION = "1.0.0"
DEFAULT_GREETING = "Hello from sample-app"


def version_info() -> dict:
    """What /version reports: the commit baked in at build time and the environment it runs in."""
    return {
        "app": APP_NAME,
        "commit": os.environ.get("APP_COMMIT", "unknown"),
        "version": VERSION,
        "environment": os.environ.get("APP_ENV", ""),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/version":
            self._reply(200, "application/json", json.dumps(version_info()))
        elif self.path == "/healthz":
            self._reply(200, "text/plain", "ok")
        elif self.path == "/":
            self._reply(200, "text/plain", os.environ.get("APP_GREETING", DEFAULT_GREETING))
        else:
            self._reply(404, "text/plain", "not found")

    def _reply(self, status: int, content_type: str, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        if os.environ.get("APP_ACCESS_LOG"):
            super().log_message(format, *args)


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0 picks a free one)."""
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    server = make_server(os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080")))
    # shutdown() blocks until serve_forever returns, so it must run off the serving thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(
        f"{APP_NAME} {VERSION} listening on {server.server_address[0]}:{server.server_port}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
