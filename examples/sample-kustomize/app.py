"""sample-kustomize: a WSGI service that says which build and environment it runs.

Its settings come from the environment, which its Kustomize manifests fill from a generated
ConfigMap (HOST, PORT, APP_ENV, APP_GREETING).
"""

import json
import os
from wsgiref.simple_server import make_server

DEFAULT_GREETING = "Hello from sample-kustomize"


def application(environ, start_response):
    """/ greets, /healthz answers ok, /version reports the commit baked in and the environment."""
    routes = {
        "/": ("text/plain", os.environ.get("APP_GREETING") or DEFAULT_GREETING),
        "/healthz": ("text/plain", "ok"),
        "/version": (
            "application/json",
            json.dumps(
                {
                    "app": "sample-kustomize",
                    "commit": os.environ.get("APP_COMMIT", "unknown"),
                    "environment": os.environ.get("APP_ENV", ""),
                }
            ),
        ),
    }
    kind, body = routes.get(environ.get("PATH_INFO", "/"), ("text/plain", "not found"))
    status = "404 Not Found" if body == "not found" else "200 OK"
    start_response(status, [("Content-Type", f"{kind}; charset=utf-8")])
    return [body.encode()]


if __name__ == "__main__":
    host, port = os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080"))
    with make_server(host, port, application) as server:
        print(f"sample-kustomize listening on {host}:{port}", flush=True)
        server.serve_forever()
