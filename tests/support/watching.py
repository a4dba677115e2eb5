"""`reel-reconciler watch` as a process the tests start, read and stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from devkit.emulators import Emulators, free_port
from devkit.seed import World
from tests.support.patience import bound, wait_for

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Watch:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def logs(self) -> str:
        return self.log.read_text()[-4000:]

    def get(self, path: str) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def ready(self) -> bool:
        try:
            return self.get("/readyz").status_code == 200
        except requests.ConnectionError:
            return False

    def wait_ready(self) -> None:
        wait_for(lambda: self.proc.poll() is None and self.ready(), 30,
                 lambda: f"watch to become ready\n{self.logs()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 10) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(bound(timeout))
        return code, time.monotonic() - started


def start_watch(emulators: Emulators | None, world: World, log: Path, *args: str,
                port: int | None = None, env: dict[str, str] | None = None) -> Watch:
    """`watch` on the emulators' addresses (None: those already in the environment); `env`
    is added to the process's environment."""
    port = port or free_port()
    env = {**os.environ, **(emulators.env() if emulators else {}), "REEL_BUCKET": world.bucket,
           **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reel_reconciler.cli", "watch", "--metrics-port", str(port),
             "--log-format", "json", "--log-level", "INFO", *args],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Watch(proc, port, log)


