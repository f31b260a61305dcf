import json
import os
import unittest
from unittest import mock

import app


def get(path: str) -> tuple[str, str]:
    seen = {}
    body = app.application({"PATH_INFO": path}, lambda status, headers: seen.update(s=status))
    return seen["s"], b"".join(body).decode()


class ApplicationTest(unittest.TestCase):
    def test_version_reports_commit_and_environment(self) -> None:
        with mock.patch.dict(os.environ, {"APP_COMMIT": "abc123", "APP_ENV": "dev"}):
            status, body = get("/version")
        self.assertEqual(status, "200 OK")
        self.assertEqual(json.loads(body)["commit"], "abc123")
        self.assertEqual(json.loads(body)["environment"], "dev")

    def test_greeting_comes_from_the_environment_else_the_default(self) -> None:
        with mock.patch.dict(os.environ, {"APP_GREETING": ""}):
            self.assertEqual(get("/")[1], app.DEFAULT_GREETING)
        with mock.patch.dict(os.environ, {"APP_GREETING": "Hi"}):
            self.assertEqual(get("/")[1], "Hi")

    def test_unknown_paths_are_not_found(self) -> None:
        self.assertEqual(get("/nope")[0], "404 Not Found")


if __name__ == "__main__":
    unittest.main()
