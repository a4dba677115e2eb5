"""The reconcile endpoint of a `watch` process, as the app's frontend calls it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from devkit.emulators import Emulators, free_port
from devkit.seed import World
from tests.support.patience import bound
from tests.support.watching import Watch, start_watch

SEED_KEYS = ["projectId", "originalStatus", "correctedStatus", "claimedClips", "verifiedClips",
             "missingClips", "restoredClips", "action"]
"""The seed's report keys, in the seed's order: a client written for it reads them first."""
ANONYMOUS_401 = {"code": "unauthenticated", "message": "no valid credentials"}
"""Every 401: before login, nothing but that."""


@dataclass
class Endpoint:
    watch: Watch
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reconcile(self, project_id: str, token: str | None = None, *, body: Any = None,
                  data: bytes | None = None, method: str = "POST",
                  headers: dict[str, str] | None = None) -> requests.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return requests.request(method, f"{self.base}/api/reel/projects/{project_id}/reconcile",
                                json=body, data=data, headers=sent, timeout=bound(60))

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(f"{self.base}{path}", timeout=bound(10), **kw)

    def log_text(self) -> str:
        """The whole log of the process (Watch.logs keeps only its end)."""
        return self.watch.log.read_text()


def start_endpoint(emulators: Emulators | None, world: World, log: Path, *args: str,
                   env: dict[str, str] | None = None) -> Endpoint:
    """`watch` with the endpoint on; its sweep and stale timers far off and its listeners
    settling as by default, so that every correction seen is the endpoint's (a forced
    trigger: no settle window)."""
    port = free_port()
    watch = start_watch(emulators, world, log, "--sweep-interval", "1h",
                        "--stale-interval", "1h", "--api-port", str(port), *args, env=env)
    try:
        watch.wait_ready()
    except BaseException:
        watch.kill()
        raise
    return Endpoint(watch, port)


def error_of(response: requests.Response) -> dict[str, Any]:
    """The JSON error every refusal carries; fails on any other shape."""
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    body = response.json()
    assert body["success"] is False, body
    assert set(body["error"]) == {"code", "message"}, body
    error: dict[str, Any] = body["error"]
    return error


def log_records(log: str) -> list[dict[str, Any]]:
    """The JSON log lines of a process (anything else skipped)."""
    records = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def refused_logins(log: str) -> list[dict[str, Any]]:
    return [r for r in log_records(log) if r.get("message") == "login refused"]
