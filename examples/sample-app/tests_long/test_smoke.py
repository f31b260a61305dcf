import json
import os
import signal
import subprocess
import sys
import time
import unittest
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app.py"


class SmokeTest(unittest.TestCase):
    """Runs app.py as a real process, the way the container runs it."""

    def setUp(self) -> None:
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": "0", "APP_COMMIT": "smoke"}
        self.proc = subprocess.Popen(
            [sys.executable, str(APP)], env=env, stdout=subprocess.PIPE, text=True
        )
        self.addCleanup(self.stop)
        banner = self.proc.stdout.readline()
        self.base = "http://" + banner.rsplit(" ", 1)[-1].strip()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return response.read().decode()

    def test_serves_many_concurrent_requests(self) -> None:
        paths = ["/version", "/healthz", "/"] * 200
        with ThreadPoolExecutor(max_workers=16) as pool:
            bodies = list(pool.map(self.get, paths))
        self.assertEqual(bodies[1::3], ["ok"] * 200)
        self.assertTrue(all(json.loads(b)["commit"] == "smoke" for b in bodies[0::3]))

    def test_sigterm_stops_the_server_cleanly(self) -> None:
        self.assertEqual(self.get("/healthz"), "ok")
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=10), 0)
        self.assertLess(time.monotonic() - started, 10)


if __name__ == "__main__":
    unittest.main()
