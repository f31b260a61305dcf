import json
import os
import threading
import unittest
import urllib.error
import urllib.request
from unittest import mock

import app


class AppTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = app.make_server("127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def tearDown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(self.base + path, timeout=5) as response:
            return response.status, response.read().decode()

    def test_version_reports_commit_and_environment(self) -> None:
        with mock.patch.dict(os.environ, {"APP_COMMIT": "abc123", "APP_ENV": "staging"}):
            status, body = self.get("/version")
        self.assertEqual(status, 200)
        self.assertEqual(
            json.loads(body),
            {
                "app": "sample-app",
                "commit": "abc123",
                "version": app.VERSION,
                "environment": "staging",
            },
        )

    def test_version_commit_defaults_to_unknown(self) -> None:
        with mock.patch.dict(os.environ, clear=True):
            self.assertEqual(json.loads(self.get("/version")[1])["commit"], "unknown")

    def test_healthz_is_ok(self) -> None:
        self.assertEqual(self.get("/healthz"), (200, "ok"))

    def test_root_greets_with_default_or_configured_greeting(self) -> None:
        with mock.patch.dict(os.environ, clear=True):
            self.assertEqual(self.get("/"), (200, app.DEFAULT_GREETING))
        with mock.patch.dict(os.environ, {"APP_GREETING": "Hi staging"}):
            self.assertEqual(self.get("/"), (200, "Hi staging"))

    def test_unknown_path_is_404(self) -> None:
        with self.assertRaises(urllib.error.HTTPError) as caught:
            self.get("/nope")
        self.assertEqual(caught.exception.code, 404)


if __name__ == "__main__":
    unittest.main()
