"""The stale-job cleanup from the jobs listener's view, against Google's Firestore emulator
with the listeners running and the app writing jobs and projects meanwhile: stale jobs are
failed reading only the candidates, a job that goes silent later is found, and a job the app
refreshed between the view and the read is left alone."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from devkit.app import ReelApp
from devkit.seed import World
from reel_reconciler.engine.listener import ListenerSet, WatchdogSettings, safe_beat
from reel_reconciler.engine.reconcile import Engine
from reel_reconciler.engine.stale import ActiveJobs, StaleCleanup, cleanup_stale_jobs
from reel_reconciler.model import ReconcilerId
from reel_reconciler.runtime import ReconcilerRuntime
from reel_reconciler.spec import ReconcilerSpec
from reel_reconciler.stores.firestore import FirestoreStore
from reel_reconciler.stores.gcs import GcsStore
from tests.conftest import settings_for
from tests.integration.test_listeners import Inbox, wait_until
from tests.support.patience import bound
from tests.support.recording import recording_engine
from tests.support.running import running

TIMEOUT = max(6, round(bound(1.2)))
"""Seconds of silence that make a job stale here; the busy jobs are written far more often
(scaled with patience: on a crowded machine a round of their writes takes longer)."""
BUSY = 40
"""Jobs the app keeps writing: what a query pass would read each time."""


def stale_reads(reconciler: str) -> float:
    value = REGISTRY.get_sample_value("reel_reconciler_firestore_documents_read_total",
                                      {"reconciler": reconciler, "trigger": "stale_job"})
    return value or 0.0


class Busy:
    """The app at work: every busy job written each round, and one of their projects."""

    def __init__(self, app: ReelApp, jobs: dict[str, str]) -> None:
        self.app = app
        self.jobs = dict(jobs)
        """Job id -> project id, of the jobs still written."""
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.rounds = 0
        self.thread = threading.Thread(target=self.run, name="busy-app", daemon=True)

    def silence(self, job_id: str) -> None:
        with self.lock:
            del self.jobs[job_id]

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                jobs = list(self.jobs.items())
            for job_id, _ in jobs:
                self.app.update_job(job_id, {"status": "processing"})
            _, project_id = jobs[self.rounds % len(jobs)]
            self.app.update_project(project_id, {"status": "generating"})
            self.rounds += 1


class Watching:
    """A listener set and an engine under a name of their own (their metric series too)."""

    def __init__(self, world: World) -> None:
        self.reconciler = ReconcilerId(f"stale-view-{uuid.uuid4().hex[:8]}")
        self.settings = settings_for(world, stale_timeout=f"{TIMEOUT}s")
        self.store = FirestoreStore(self.settings, self.reconciler)
        self.inbox = Inbox()
        self.listeners = ListenerSet(self.store, self.inbox, reconciler=self.reconciler,
                                     settings=WatchdogSettings(silence_threshold=3600.0,
                                                               resubscribe_every=3600.0))
        self.inbox.listeners = self.listeners
        self.engine = Engine(self.settings, self.store, GcsStore(self.settings, self.reconciler),
                             self.reconciler)

    def view(self) -> ActiveJobs:
        safe_beat(self.listeners)
        self.listeners.check()
        found = self.listeners.active_jobs()
        assert found is not None, "the jobs feed is not current"
        return found

    def view_with(self, job_ids: set[str]) -> ActiveJobs:
        """The view once the feed holds every one of `job_ids`."""
        seen: list[ActiveJobs] = []

        def look() -> None:
            seen[:] = [self.view()]

        wait_until(lambda: job_ids <= set(seen[0]), 10, look)
        return seen[0]

    def reads(self) -> float:
        return stale_reads(self.reconciler.label)


@pytest.fixture
def watching(world: World) -> Iterator[Watching]:
    running = Watching(world)
    running.listeners.start()
    wait_until(lambda: running.listeners.firestore_up, 10,
               lambda: (safe_beat(running.listeners), running.listeners.check()))
    yield running
    running.listeners.stop()


def test_stale_jobs_are_failed_from_the_view_reading_only_candidates(
        world: World, watching: Watching) -> None:
    app = ReelApp(world)
    busy: dict[str, str] = {}
    for n in range(BUSY):
        project_id = f"busy-{n:02d}"
        world.add_project(project_id, status="generating")
        busy[world.add_job(project_id, status="processing", updated_ago=timedelta(0))] = project_id
    dead = []
    for n in range(3):
        world.add_project(f"dead-{n}", status="generating")
        dead.append(world.add_job(f"dead-{n}", status="processing",
                                  updated_ago=timedelta(hours=1)))
    world.add_project("late", status="generating")
    late = world.add_job("late", status="processing", updated_ago=timedelta(0))
    busy[late] = "late"
    worker = Busy(app, busy)
    worker.thread.start()
    try:
        watching.view_with(set(busy) | set(dead))
        before = watching.reads()
        cleanups: list[StaleCleanup] = []

        def cleanup() -> None:
            cleanups.append(cleanup_stale_jobs(watching.engine, view=watching.view()))

        wait_until(lambda: set(dead) <= {j for c in cleanups for j in c.stale_jobs}, 10,
                   cleanup)
        assert late not in {j for c in cleanups for j in c.stale_jobs}
        worker.silence(late)  # its worker dies after the view that judged it alive
        wait_until(lambda: late in cleanups[-1].stale_jobs, 3 * TIMEOUT, cleanup)
        view_reads = watching.reads() - before
        failed = [j for c in cleanups for j in c.stale_jobs]
        assert sorted(failed) == sorted([*dead, late]), (
            f"each failed once, no busy job; the app's rounds: {worker.rounds}")
        assert [c.error for c in cleanups if c.error] == []
        assert all(c.candidates is not None for c in cleanups), "every one from the view"
        for job_id in [*dead, late]:
            assert world.job(job_id)["status"] == "failed"
        for n in (0, 1, 2):
            assert world.project(f"dead-{n}")["status"] == "error"
        active = len(busy) + len(dead)
        # Every cleanup above together read less than one query of the active jobs does.
        assert len(cleanups) >= 3
        assert worker.rounds >= 2, "the app wrote the busy jobs meanwhile"
        assert view_reads < active, (
            f"{view_reads} reads in {len(cleanups)} cleanups, candidates "
            f"{[c.candidates for c in cleanups]}")
        before = watching.reads()
        assert cleanup_stale_jobs(watching.engine).stale_jobs == []
        still_active = len(worker.jobs)
        assert watching.reads() - before >= still_active, "a query reads every active job"
    finally:
        worker.stop.set()
        worker.thread.join()
    assert all(world.job(job_id)["status"] == "processing" for job_id in worker.jobs)


def test_a_job_refreshed_between_the_view_and_the_read_is_not_failed(
        world: World, watching: Watching) -> None:
    app = ReelApp(world)
    world.add_project("revived", status="generating")
    revived = world.add_job("revived", status="processing", updated_ago=timedelta(hours=1))
    view = watching.view_with({revived})
    app.update_job(revived, {"status": "processing"})  # its worker was only slow
    result = cleanup_stale_jobs(watching.engine, view=view)
    assert result.candidates == 1, "the view still shows it silent"
    assert result.stale_jobs == []
    assert result.error is None
    assert world.job(revived)["status"] == "processing"
    watching.listeners.stop()
    assert watching.listeners.active_jobs() is None, "stopped: the timer queries"


def test_the_runtime_timer_queries_first_then_reads_only_from_the_view(world: World) -> None:
    """The runtime's own stale-job pass: its first run queries every active job, the next
    ones read only what the jobs listener shows silent."""
    world.add_project("first", status="generating")
    first = world.add_job("first", status="processing", updated_ago=timedelta(hours=1))
    spec = ReconcilerSpec.parse({
        "firestore": {"projectsCollection": world.projects_collection,
                      "jobsCollection": world.jobs_collection},
        "storage": {"bucket": world.bucket}, "settle": "0s",
        "staleJobs": {"timeout": f"{TIMEOUT}s"}})
    reconciler = ReconcilerId(f"stale-runtime-{uuid.uuid4().hex[:8]}", "test")
    runtime = ReconcilerRuntime(reconciler, spec, connector=recording_engine)
    with running(runtime):
        listeners = runtime.listeners
        assert listeners is not None
        queried = asyncio.run(runtime.cleanup_stale_jobs())
        assert (queried.candidates, queried.stale_jobs) == (None, [first])
        world.add_project("second", status="generating")
        second = world.add_job("second", status="processing", updated_ago=timedelta(hours=1))
        wait_until(lambda: second in (listeners.active_jobs() or {}), 15, lambda: None)
        from_view = asyncio.run(runtime.cleanup_stale_jobs())
        assert (from_view.candidates, from_view.stale_jobs) == (1, [second])
        assert world.job(second)["status"] == "failed"
