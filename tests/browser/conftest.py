"""A real browser on the app's origin: headless Chromium from the system (Debian's
`chromium`) driven by Playwright, the app's page and its own API served here, and users of
the Firebase Auth emulator.

A missing browser, Playwright or built client fails the tests that need it, naming it.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from devkit.seed import World

REPO = Path(__file__).resolve().parents[2]
PAGE = Path(__file__).resolve().parent / "page"
CLIENT = REPO / "clients/web"
BUILT = CLIENT / "dist/src/index.js"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "a-secret-1"
"""The password `emulator_user` signs users up with; the page signs in with it."""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """The system's Chromium, headless: never a browser Playwright downloads. One per module,
    closed before the other suites run."""
    if not CHROMIUM.exists():
        pytest.fail(f"missing prerequisite: Chromium at {CHROMIUM} (Debian package chromium: "
                    "apt-get install chromium; or set CHROMIUM to its path)", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("missing prerequisite: Playwright for Python (make venv installs it)",
                    pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def built_client() -> Path:
    """The client as `tsc` built it; a stale build would test code that is not the source."""
    sources = list((CLIENT / "src").glob("*.ts"))
    if not BUILT.exists() or any(s.stat().st_mtime > BUILT.stat().st_mtime for s in sources):
        pytest.fail(f"the web client is not built, or older than its source: {BUILT} "
                    "(make web-client builds it)", pytrace=False)
    return BUILT


@dataclass
class AppOrigin:
    """The app's origin: its page, the built client, and `GET /api/reel/projects/{id}` (the
    app's own fetchProject) read from Firestore; counts the fetches of each project."""

    world: World
    client: Path
    fetches: Counter[str] = field(default_factory=Counter)
    server: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> AppOrigin:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                files = {"/": (PAGE / "index.html", "text/html"),
                         "/app.js": (PAGE / "app.js", "text/javascript"),
                         "/reconcile.js": (app.client, "text/javascript")}
                if path in files:
                    file, kind = files[path]
                    self._send(200, kind, file.read_bytes())
                elif path.startswith("/api/reel/projects/"):
                    project_id = unquote(path.removeprefix("/api/reel/projects/"))
                    app.fetches[project_id] += 1
                    doc = app.world.project(project_id)
                    body = {"id": project_id, "status": doc["status"],
                            "clipFilenames": doc["clipFilenames"]}
                    self._send(200, "application/json", json.dumps(body).encode())
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: pytest shows what failed."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def app_origin(world: World, built_client: Path) -> Iterator[AppOrigin]:
    origin = AppOrigin(world, built_client).start()
    try:
        yield origin
    finally:
        origin.stop()
