"""The app's frontend flow in headless Chromium: a page on the app's origin signs a user in
against the Firebase Auth emulator, loads the built web client (clients/web) and calls a live
`reel-reconciler watch` on another origin, as the seed's App.tsx did when a project opened."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devkit.app import ReelApp, Timing
from devkit.emulators import FIREBASE_PROJECT, Emulator, Emulators
from devkit.seed import World
from tests.browser.conftest import PASSWORD, REPO, AppOrigin
from tests.support.endpoint import SEED_KEYS, Endpoint, start_endpoint
from tests.support.harness import metric
from tests.support.patience import bound, wait_for
from tests.support.tokens import emulator_user

ARTIFACTS = REPO / "build/artifacts/browser"
STALE = 6
"""The stale timeout of the stuck project's reconciler, in seconds: its job is alive when the
listeners see it, and dead by the time the page opens it."""


@dataclass
class User:
    """A user of the Auth emulator: the page signs in as `email`; `token` is for calls made
    from here."""

    uid: str
    email: str
    token: str


@dataclass
class Page:
    """One tab on the app's origin; `call` runs a function of the page (app.js)."""

    tab: Any
    console: list[str] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)

    def call(self, function: str, *args: Any) -> Any:
        return self.tab.evaluate(f"args => window.reelPage.{function}(...args)", list(args))

    def text(self, selector: str) -> str:
        return str(self.tab.text_content(selector))


@dataclass
class Scene:
    """The emulators, the app's origin and the browser of one test: reconcilers to start,
    users to sign up, and tabs signed in as them."""

    emulators: Emulators
    world: World
    tmp_path: Path
    auth: Emulator
    app: AppOrigin
    chromium: Any

    def user(self, name: str) -> User:
        """A user of the Auth emulator, under an address no other test of the module took."""
        email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
        uid, token = emulator_user(self.auth.host, email)
        return User(uid, email, token)

    @contextmanager
    def endpoint(self, *args: str, cors: bool = True) -> Iterator[Endpoint]:
        """`watch` trusting the Auth emulator's users (a demo project allows it), with the
        app's origin allowed unless `cors` is off."""
        allowed = ("--api-cors-origin", self.app.origin) if cors else ()
        endpoint = start_endpoint(self.emulators, self.world, self.tmp_path / "watch.log",
                                  "--api-firebase-project", FIREBASE_PROJECT, *allowed, *args,
                                  env={"FIREBASE_AUTH_EMULATOR_HOST": self.auth.host})
        try:
            yield endpoint
        finally:
            endpoint.watch.kill()

    @contextmanager
    def page(self, endpoint: Endpoint, user: User) -> Iterator[Page]:
        """The app's page in a fresh browser context, `user` signed in on it."""
        context = self.chromium.new_context(viewport={"width": 1000, "height": 900})
        try:
            tab = context.new_page()
            page = Page(tab)
            tab.on("console", lambda message: page.console.append(message.text))
            tab.on("response", lambda response: page.responses.append(response))
            tab.goto(f"{self.app.origin}/?reconciler={endpoint.base}&auth={self.auth.host}")
            tab.wait_for_function("window.reelPage !== undefined", timeout=bound(10) * 1000)
            assert page.call("signIn", user.email, PASSWORD) == user.uid
            yield page
        finally:
            context.close()


@pytest.fixture
def scene(emulators: Emulators, world: World, tmp_path: Path, auth_emulator: Emulator,
          app_origin: AppOrigin, chromium: Any) -> Scene:
    return Scene(emulators, world, tmp_path, auth_emulator, app_origin, chromium)


def listener_skips(endpoint: Endpoint) -> float:
    return metric(endpoint.watch.get("/metrics").text, "reel_reconciler_reconcile_total",
                  trigger="listener", action="skipped")


def test_a_stuck_project_heals_from_the_page_which_refetches_it(scene: Scene) -> None:
    world, app = scene.world, scene.app
    alice, mallory = scene.user("alice"), scene.user("mallory")
    with scene.endpoint("--settle", "2s", "--stale-timeout", f"{STALE}s") as endpoint:
        # A worker that dies now: the listeners see its job alive and leave the project to
        # it; nothing writes after, so only the page's call can heal it.
        job, paths = world.generated_project("p-stuck", user=alice.uid, status="generating",
                                             prompts=3, in_gcs=3, in_db=0,
                                             job_status="processing",
                                             job_updated_ago=timedelta(0))
        dead_at = time.monotonic() + STALE + 1
        wait_for(lambda: listener_skips(endpoint) >= 1, 10,
                 lambda: f"the listeners to leave p-stuck to its job\n{endpoint.watch.logs()}")
        with scene.page(endpoint, mallory) as page:
            theirs = page.call("reconcile", "p-stuck")
            assert theirs["error"] == {"name": "NotFoundError", "status": 404,
                                       "code": "not_found", "message": "no project 'p-stuck'",
                                       "retryAfterMs": None}, theirs
        time.sleep(max(0.0, dead_at - time.monotonic()))  # the job's worker is now dead
        assert world.project("p-stuck")["status"] == "generating", "healed by the listeners"
        with scene.page(endpoint, alice) as page:
            opened = page.call("openProject", "p-stuck")
            assert opened["error"] is None, (opened, page.console)
            report = opened["report"]
            assert list(report)[:len(SEED_KEYS)] == SEED_KEYS
            assert report["action"] == "corrected", report
            assert (report["originalStatus"], report["correctedStatus"]) == ("generating",
                                                                              "ready")
            assert report["claimedClips"] == 0
            assert report["restoredClips"] == paths
            assert "stuck_generating" in report["driftKinds"]
            assert report["staleJobs"] == [job]
            assert opened["before"]["status"] == "generating"
            assert opened["after"] == {"id": "p-stuck", "status": "ready",
                                       "clipFilenames": paths}, "refetched on corrected"
            assert app.fetches["p-stuck"] == 2
            assert page.text("#after-status") == "ready"
            assert page.text("#action") == "reconciled: corrected"
            assert '"action": "corrected"' in page.text("#report")
            [answer] = [r for r in page.responses if r.url.startswith(endpoint.base)]
            assert answer.status == 200
            assert answer.headers["access-control-allow-origin"] == app.origin
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "stuck-project-reconciled.png"
            page.tab.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the page after the call: {shot}")
            again = page.call("openProject", "p-stuck")
            assert again["report"]["action"] == "no_change", again
            assert app.fetches["p-stuck"] == 3, "refetched without a correction"
        doc = world.project("p-stuck")
        assert doc["status"] == "ready"
        assert doc["clipFilenames"] == paths
        text = endpoint.watch.get("/metrics").text
        assert metric(text, "reel_reconciler_reconcile_total", trigger="api",
                      action="corrected") == 1


def test_a_live_generation_raced_from_the_page_is_never_written(scene: Scene) -> None:
    alice = scene.user("alice")
    app = ReelApp(scene.world, Timing(window=0.1, per_prompt=0.5, exists_check=0.2))
    app.create_project("p-live", user=alice.uid, prompts=3)
    with (scene.endpoint("--api-rate-limit", "10000/minute") as endpoint,
          scene.page(endpoint, alice) as page):
        generation = app.generation("p-live").start().run_in_thread()
        reports = []
        while not generation.finished.is_set():
            answer = page.call("reconcile", "p-live")
            assert answer["error"] is None, answer
            reports.append(answer["report"])
        assert generation.join(bound(60)) == "completed"
    actions = {r["action"] for r in reports}
    assert reports
    assert actions <= {"skipped", "no_change"}, reports
    assert any(r["action"] == "skipped" and r.get("reason") for r in reports)
    doc = scene.world.project("p-live")
    assert doc["status"] == "ready"
    assert doc["clipFilenames"] == generation.made
    assert "lastReconciliation" not in doc


def test_a_burst_from_the_page_reads_as_rate_limited_with_its_delay(scene: Scene) -> None:
    alice = scene.user("alice")
    scene.world.generated_project("p-calm", user=alice.uid, status="ready", prompts=2,
                                  in_gcs=2, in_db=2)
    with (scene.endpoint("--api-rate-limit", "3/minute") as endpoint,
          scene.page(endpoint, alice) as page):
        answers = page.call("burst", "p-calm", 4)
    reports = [a["report"] for a in answers if a["error"] is None]
    [limited] = [a["error"] for a in answers if a["error"] is not None]
    assert [r["action"] for r in reports] == ["no_change"] * 3, answers
    assert (limited["name"], limited["status"], limited["code"]) == (
        "RateLimitedError", 429, "rate_limited"), limited
    # 3 a minute: one more every 20 s. The client's own fallback is 5 s, so this delay
    # could only come from the Retry-After header the page was allowed to read.
    assert limited["retryAfterMs"] % 1000 == 0
    assert 10_000 <= limited["retryAfterMs"] <= 60_000


def test_without_cors_the_browser_blocks_the_call_and_nothing_is_written(scene: Scene) -> None:
    world = scene.world
    alice = scene.user("alice")
    _, paths = world.generated_project("p-behind", user=alice.uid, status="ready", prompts=3,
                                       in_gcs=3, in_db=3)
    world.delete_object(paths[1])
    before = world.update_time("p-behind")
    with scene.endpoint("--settle", "1h", cors=False) as endpoint:
        with scene.page(endpoint, alice) as page:
            opened = page.call("openProject", "p-behind")
            assert opened["report"] is None, opened
            assert (opened["error"]["name"], opened["error"]["status"],
                    opened["error"]["code"]) == ("ReconcileError", 0, "network"), opened
            assert any("blocked by CORS policy" in line for line in page.console), page.console
            assert scene.app.fetches["p-behind"] == 1
        assert world.update_time("p-behind") == before
        text = endpoint.watch.get("/metrics").text
        assert metric(text, "reel_reconciler_reconcile_total", trigger="api") == 0
        # The same call from outside a browser goes through: the block was the browser's.
        direct = endpoint.reconcile("p-behind", alice.token)
        assert direct.status_code == 200
        assert direct.json()["report"]["action"] == "corrected"
        assert world.update_time("p-behind") != before
