"""A burst of listener events reconciled together (Engine.reconcile_many), on the emulators."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devkit.emulators import Emulators, fake_gcs_server, firestore_emulator
from devkit.seed import World
from reel_reconciler.engine import Engine, Trigger
from reel_reconciler.model import Action
from reel_reconciler.stores.firestore import FirestoreStore
from reel_reconciler.stores.gcs import GcsStore
from tests.conftest import settings_for
from tests.support.recording import TESTS

Make = Callable[..., Engine]


def stuck(world: World, count: int, prefix: str = "stuck") -> list[str]:
    """Crashed generations with every clip in GCS and none in the document."""
    ids = [f"{prefix}-{i:02d}" for i in range(count)]
    for project_id in ids:
        world.generated_project(project_id, status="generating", prompts=2, in_gcs=2, in_db=0,
                                job_status="processing", job_updated_ago=timedelta(hours=2))
    return ids


def test_a_burst_takes_one_read_a_query_per_30_and_one_commit(world: World,
                                                              make_engine: Make) -> None:
    ids = stuck(world, 40)
    world.generated_project("healthy", status="ready", prompts=2, in_gcs=2, in_db=2)
    world.add_project("invalid", status="generating", promptList="not a list")
    engine = make_engine()
    before = engine.firestore.requests.by_op()
    reports = engine.reconcile_many([*ids, "healthy", "invalid", "gone", ids[0]],
                                    Trigger.LISTENER)
    made = engine.firestore.requests.by_op() - before
    assert made == {"get_projects": 1, "query_jobs": 2, "update_projects": 1}
    assert [r.project_id for r in reports] == [*ids, "healthy", "invalid", "gone"]
    by_id = {r.project_id: r for r in reports}
    assert all(by_id[p].action is Action.CORRECTED for p in ids)
    assert by_id["healthy"].action is Action.NO_CHANGE
    assert by_id["invalid"].action is Action.SKIPPED
    assert by_id["gone"].action is Action.ERROR
    assert "not found" in (by_id["gone"].error or "")
    for project_id in ids:
        doc = world.project(project_id)
        assert doc["status"] == "ready"
        assert all(doc["clipFilenames"])


def test_observe_mode_reports_the_burst_and_writes_nothing(world: World,
                                                         make_engine: Make) -> None:
    ids = stuck(world, 3)
    before = {project_id: world.update_time(project_id) for project_id in ids}
    reports = make_engine().reconcile_many(ids, Trigger.LISTENER, dry_run=True)
    assert {r.action for r in reports} == {Action.DRIFT}
    assert {project_id: world.update_time(project_id) for project_id in ids} == before


class _AppWritesBeforeCommit(FirestoreStore):
    """The app writes one project of the burst after the engine read it, before the commit.

    A real concurrent writer on a real Firestore; this subclass only chooses the moment.
    """

    def __init__(self, *args: Any, world: World, project_id: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.world, self.project_id = world, project_id
        self.commits = 0

    def update_projects(self, updates: Mapping[str, tuple[Mapping[str, Any], datetime]]
                        ) -> dict[str, datetime]:
        if self.commits == 0:
            writer = threading.Thread(target=self.world.projects().document(
                self.project_id).update, args=({"title": "renamed by the app"},))
            writer.start()
            writer.join()
        self.commits += 1
        return super().update_projects(updates)


def test_a_stale_document_fails_the_commit_then_each_project_is_written_alone(
        world: World, make_engine: Make) -> None:
    ids = stuck(world, 5)
    probe = make_engine()
    store = _AppWritesBeforeCommit(probe.settings, TESTS, world=world, project_id=ids[2])
    engine = Engine(probe.settings, store, probe.gcs, TESTS)
    reports = engine.reconcile_many(ids, Trigger.LISTENER)
    assert store.commits == 1
    assert [r.action for r in reports] == [Action.CORRECTED] * 5
    made = store.requests.by_op()
    # the commit failed whole; four writes kept their first read, the stale one re-read
    assert made["update_projects"] == 1
    assert made["get_projects"] == 2
    assert made["update_project"] == 5 + 1
    doc = world.project(ids[2])
    assert doc["title"] == "renamed by the app"
    assert doc["status"] == "ready"
    assert all(world.project(p)["status"] == "ready" for p in ids)


def test_firestore_down_fails_the_burst_at_once_and_writes_nothing(
        emulators: Emulators, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped for real mid-way: every project is an unreachable error (the queue retries
    them with backoff) after one retry deadline, not one per project."""
    fs = firestore_emulator(tmp_path)
    fs.start()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", fs.host)
    try:
        world = World.create(emulators.gcp_project)
        ids = stuck(world, 6)
        settings = settings_for(world, retry_deadline=2.0, request_timeout=1.0)
        engine = Engine(settings, FirestoreStore(settings, TESTS), GcsStore(settings, TESTS), TESTS)
        fs.stop()
        started = time.monotonic()
        reports = engine.reconcile_many(ids, Trigger.LISTENER)
        assert time.monotonic() - started < 10
        assert [r.action for r in reports] == [Action.ERROR] * 6
        assert all(r.unreachable for r in reports)
        assert engine.gcs.requests.total() == 0
    finally:
        fs.stop()


def test_storage_down_stops_the_burst_after_one_project(
        world: World, make_engine: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first listing that cannot reach GCS ends the burst: the others are not attempted
    (each would wait out its own retry deadline), and nothing is written."""
    ids = stuck(world, 5)
    before = {project_id: world.update_time(project_id) for project_id in ids}
    nowhere = fake_gcs_server(tmp_path)  # configured, never started: nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{nowhere.host}")
    engine = make_engine(retry_deadline=2.0, request_timeout=1.0)
    started = time.monotonic()
    reports = engine.reconcile_many(ids, Trigger.LISTENER)
    assert time.monotonic() - started < 2 * 2.0 + 3
    assert [r.action for r in reports] == [Action.ERROR] * 5
    assert all(r.unreachable for r in reports)
    assert [("not attempted" in (r.error or "")) for r in reports] == [False] + [True] * 4
    assert engine.gcs.requests.by_op()["list"] == 1
    assert {project_id: world.update_time(project_id) for project_id in ids} == before
