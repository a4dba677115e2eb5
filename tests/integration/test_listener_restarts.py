"""Listener restarts that pick up where the last feed stopped, against Google's Firestore
emulator with the app simulator writing meanwhile.

Measured on the emulator: a Listen that carries a resume token (even a made-up one) is
answered with a reset and every match again, never with only the changes since. So what
spares the projects at rest here is the comparison of update times with the previous feed's
members; on Firestore itself the token also spares the resend."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from devkit.app import ReelApp, Timing
from devkit.seed import World
from reel_reconciler.engine.listener import ListenerSet, WatchdogSettings, safe_beat
from reel_reconciler.engine.reconcile import Engine
from reel_reconciler.engine.stale import cleanup_stale_jobs
from reel_reconciler.model import ReconcilerId
from reel_reconciler.stores.firestore import FirestoreStore
from reel_reconciler.stores.gcs import GcsStore
from tests.conftest import settings_for
from tests.integration.test_listeners import Inbox, wait_until
from tests.support.patience import bound

RESUBSCRIBE = 600.0


def snapshot_count(reconciler: str, listener: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "reel_reconciler_listener_snapshot_documents_total",
        {"reconciler": reconciler, "listener": listener, "outcome": outcome})
    return value or 0.0


class Running:
    """A listener set under a name of its own (its metric series are this test's alone)."""

    def __init__(self, world: World, stale_timeout: str = "2h") -> None:
        self.reconciler = ReconcilerId(f"restarts-{uuid.uuid4().hex[:8]}")
        self.name = self.reconciler.label
        self.inbox = Inbox()
        self.settings = settings_for(world, stale_timeout=stale_timeout)
        self.store = FirestoreStore(self.settings, self.reconciler)
        self.found = ListenerSet(self.store, self.inbox, reconciler=self.reconciler,
                                 settings=WatchdogSettings(silence_threshold=3600.0,
                                                           resubscribe_every=RESUBSCRIBE))
        self.inbox.listeners = self.found

    def first_snapshots(self) -> float:
        return sum(snapshot_count(self.name, "heartbeat", outcome)
                   for outcome in ("queued", "skipped"))

    def wait_healthy(self) -> None:
        wait_until(lambda: self.found.healthy, 10, self.tick)

    def tick(self) -> None:
        safe_beat(self.found)
        assert self.found.check() is None

    def scheduled_restart(self) -> None:
        """The watchdog's periodic restart, as if the interval had passed; returns once every
        new feed has delivered its first snapshot."""
        skipped_before = snapshot_count(self.name, "projects", "skipped")
        queued_before = snapshot_count(self.name, "projects", "queued")
        reason = self.found.check(now=time.time() + RESUBSCRIBE + 1)
        assert reason == "scheduled"
        wait_until(lambda: snapshot_count(self.name, "projects", "skipped") > skipped_before
                   or snapshot_count(self.name, "projects", "queued") > queued_before,
                   10, lambda: None)
        self.wait_healthy()


@pytest.fixture
def running(world: World) -> Iterator[Running]:
    found = Running(world)
    found.found.start()
    yield found
    found.found.stop()


def test_a_scheduled_restart_queues_none_of_the_projects_at_rest(
        world: World, running: Running) -> None:
    at_rest = [f"failed-{i}" for i in range(40)]
    for project_id in at_rest:
        world.add_project(project_id, status="error")
    for project_id in at_rest:
        running.inbox.wait_for(project_id)
    running.wait_healthy()
    app = ReelApp(world, Timing(window=0.05, per_prompt=0.2))
    app.create_project("live", prompts=4)
    before = len(running.inbox.ids)
    generation = app.generation("live").start().run_in_thread()  # writes through the restart
    running.scheduled_restart()
    generation.finished.wait(bound(20))
    again = [item for item in running.inbox.ids[before:] if item in at_rest]
    assert again == []
    assert snapshot_count(running.name, "projects", "skipped") >= len(at_rest)
    assert "live" in running.inbox.ids[before:]


def test_what_changed_while_the_listeners_were_down_is_queued_after_the_restart(
        world: World, running: Running) -> None:
    world.add_project("edited", status="error")
    world.add_project("untouched", status="error")
    world.add_job("p-done", status="processing", job_id="job-done")
    running.inbox.wait_for("edited")
    running.inbox.wait_for("untouched")
    wait_until(lambda: "job-done" in (running.found.listeners[1].feed.state().members
                                      if running.found.listeners[1].feed else {}),
               10, lambda: None)
    running.wait_healthy()
    before = len(running.inbox.ids)
    for listener in running.found.listeners:
        listener.stop()
    app = ReelApp(world)
    app.update_project("edited", {"errorInfo": {"message": "retried by hand"}})
    world.add_project("arrived", status="generating")
    app.update_job("job-done", {"status": "completed"})
    for listener in running.found.listeners:
        listener.start()
    for project_id in ("edited", "arrived", "p-done"):
        running.inbox.wait_for(project_id)
    running.wait_healthy()
    assert "untouched" not in running.inbox.ids[before:]


def test_a_stuck_project_skipped_by_a_restart_is_still_healed(world: World) -> None:
    """A generation whose worker went silent: the restart skips its unchanged project, the
    stale-job timer fails the job, and the project is corrected by the usual rules."""
    running = Running(world, stale_timeout="3s")
    app = ReelApp(world)
    app.create_project("silent", prompts=3)
    generation = app.generation("silent", hang_at=0).start().run_in_thread()
    running.found.start()
    try:
        running.inbox.wait_for("silent")
        running.wait_healthy()
        before = len(running.inbox.ids)
        running.scheduled_restart()
        assert "silent" not in running.inbox.ids[before:]
        gcs = GcsStore(running.settings, running.reconciler)
        engine = Engine(running.settings, running.store, gcs, running.reconciler)
        cleaned = None

        def cleanup() -> None:
            nonlocal cleaned
            cleaned = cleanup_stale_jobs(engine, False)

        wait_until(lambda: cleaned is not None and generation.job_id in cleaned.stale_jobs,
                   15, cleanup)
        project = world.projects().document("silent").get().to_dict()
        assert project is not None
        assert project["status"] == "error"
        running.inbox.wait_for("silent")  # the jobs feed saw the job leave after the restart
    finally:
        generation.crash()
        running.found.stop()


class Flaky(Inbox):
    """Fails once on the first batch that holds `project_id`, as a broken enqueue would."""

    def __init__(self, project_id: str) -> None:
        super().__init__()
        self.project_id = project_id
        self.failed = False

    def __call__(self, ids: list[str]) -> None:
        if self.project_id in ids and not self.failed:
            self.failed = True
            raise RuntimeError("enqueue failed")
        super().__call__(ids)


def test_after_our_callback_failed_the_restart_queues_every_member_again(world: World) -> None:
    """Ids a failed callback dropped are not in the queue: the next feed starts blank."""
    world.add_project("dropped", status="error")
    running = Running(world)
    running.inbox = Flaky("dropped")
    running.found = ListenerSet(running.store, running.inbox, reconciler=running.reconciler,
                                settings=WatchdogSettings(silence_threshold=3600.0,
                                                          resubscribe_every=RESUBSCRIBE))
    running.inbox.listeners = running.found
    running.found.start()
    try:
        wait_until(lambda: running.found.listeners[0].error is not None, 10, lambda: None)
        assert running.found.check() == "callback_error"
        running.inbox.wait_for("dropped")
    finally:
        running.found.stop()
