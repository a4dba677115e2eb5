"""The breaker on destructive corrections, on the stores in memory: a budget over a window,
a trip that stops every destructive write (the rest goes on), a state kept in the store that
a restart reads back, a resume by a person, and the empty-bucket check of a sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from devkit.memory import EPOCH, MemoryObjects, MemoryProjects
from reel_reconciler.config import Settings
from reel_reconciler.engine.breaker import Breaker
from reel_reconciler.engine.reconcile import Pipeline
from reel_reconciler.engine.recorder import Recorder
from reel_reconciler.engine.sweep.start import suspect_an_empty_bucket
from reel_reconciler.model import Action, Report, Trigger
from reel_reconciler.policy.destructive import is_destructive
from tests.support.recording import TESTS

NOW = EPOCH + timedelta(days=1)
ROOT = "reel-maker"


def clip(project_id: str) -> str:
    return f"{ROOT}/u1/{project_id}/raw/job-{project_id}/prompt-00/clip.mp4"


def ready_claiming(projects: MemoryProjects, project_id: str) -> None:
    """`ready` with one claimed clip; whether it exists is up to the bucket."""
    projects.put_project(project_id, {
        "userId": "u1", "status": "ready", "durationSeconds": 8, "promptList": ["a"],
        "clipFilenames": [clip(project_id)]})


def stuck(projects: MemoryProjects, objects: MemoryObjects, project_id: str) -> None:
    """Generating for ever, its clip in the bucket: healing it is not destructive."""
    projects.put_project(project_id, {
        "userId": "u1", "status": "generating", "durationSeconds": 8, "promptList": ["a"],
        "clipFilenames": []})
    projects.put_job(f"job-{project_id}", {
        "projectId": project_id, "userId": "u1", "status": "failed", "promptCount": 1,
        "createdAt": EPOCH, "updatedAt": EPOCH})
    objects.put(clip(project_id))


def pipeline(projects: MemoryProjects, objects: MemoryObjects, **overrides: Any) -> Pipeline:
    settings = Settings(bucket="reels", root_prefix=ROOT, settle="0s", **overrides)
    return Pipeline(settings, projects, objects, Recorder(TESTS), clock=lambda: NOW)


def test_what_is_destructive() -> None:
    assert is_destructive(Report(project_id="p", missing_clips=["a"]))
    assert is_destructive(Report(project_id="p", stitched_missing="r.mp4"))
    assert is_destructive(Report(project_id="p", original_status="ready",
                                 corrected_status="draft"))
    assert not is_destructive(Report(project_id="p", original_status="generating",
                                     corrected_status="ready", restored_clips=["a"]))
    assert not is_destructive(Report(project_id="p", original_status="ready",
                                     corrected_status="ready", restored_clips=["a"]))


def test_the_budget_then_a_trip_that_stops_destructive_writes_only() -> None:
    projects, objects = MemoryProjects(), MemoryObjects()
    engine = pipeline(projects, objects, max_destructive=3)
    ids = [f"p{i}" for i in range(6)]
    for project_id in ids:
        ready_claiming(projects, project_id)
    reports = [engine.reconcile(project_id, Trigger.LISTENER) for project_id in ids]
    assert [r.action for r in reports] == [Action.CORRECTED] * 3 + [Action.SKIPPED] * 3
    assert all("breaker" in (r.reason or "") for r in reports[3:])
    assert {pid for pid, _ in projects.writes} == set(ids[:3])
    assert engine.breaker.state.tripped
    stuck(projects, objects, "heal-me")
    assert engine.reconcile("heal-me", Trigger.LISTENER).action is Action.CORRECTED, (
        "a tripped breaker still lets healing through")
    assert engine.reconcile("p5", Trigger.CLI, dry_run=True).action is Action.DRIFT, (
        "a dry run shows what a resumed reconciler would write")


def test_the_window_slides() -> None:
    projects = MemoryProjects()
    now = [0.0]
    breaker = Breaker(projects, "breakers", TESTS, budget=2, window=60, clock=lambda: now[0])
    assert breaker.allow() is None
    assert breaker.allow() is None
    now[0] = 61.0
    assert breaker.allow() is None
    assert breaker.allow() is None
    assert breaker.allow() is not None
    assert breaker.state.tripped


def test_a_trip_is_kept_in_the_store_a_restart_reads_it_and_a_resume_ends_it() -> None:
    projects, objects = MemoryProjects(), MemoryObjects()
    first = pipeline(projects, objects, max_destructive=0)
    ready_claiming(projects, "p0")
    assert first.reconcile("p0", Trigger.SWEEP).action is Action.SKIPPED
    restarted = pipeline(projects, objects, max_destructive=50)
    assert restarted.breaker.load().tripped, "a restart must not reset a tripped breaker"
    assert restarted.reconcile("p0", Trigger.SWEEP).action is Action.SKIPPED
    restarted.breaker.resume("token-1")
    assert first.breaker.load().resumed_token == "token-1"
    assert not first.breaker.state.tripped
    assert restarted.reconcile("p0", Trigger.SWEEP).action is Action.CORRECTED


def test_a_trip_not_saved_is_saved_at_the_next_load_not_forgotten() -> None:
    projects, objects = MemoryProjects(), MemoryObjects()
    engine = pipeline(projects, objects, max_destructive=0)
    ready_claiming(projects, "p0")
    projects.down = True
    assert engine.reconcile("p0", Trigger.LISTENER).action is Action.ERROR
    breaker = engine.breaker
    assert breaker.allow() is not None
    assert breaker.state.tripped
    projects.down = False
    assert breaker.load().tripped
    assert pipeline(projects, objects).breaker.load().tripped


def test_a_sweep_of_a_bucket_with_nothing_under_the_root_writes_nothing_destructive() -> None:
    projects, objects = MemoryProjects(), MemoryObjects()
    engine = pipeline(projects, objects, max_destructive=50)
    suspect_an_empty_bucket(engine)
    ready_claiming(projects, "p0")
    report = engine.reconcile("p0", Trigger.SWEEP)
    assert report.action is Action.SKIPPED
    assert "lists nothing under reel-maker/" in (
        report.reason or "")
    listed = objects.requests.by_op()["list"]
    ready_claiming(projects, "p1")
    assert engine.reconcile("p1", Trigger.SWEEP).action is Action.SKIPPED
    assert objects.requests.by_op()["list"] == listed + 1, \
        "once tripped, the bucket is not asked again at each correction"
    assert projects.writes == []


def test_a_sweep_begun_on_an_empty_bucket_corrects_once_clips_have_appeared() -> None:
    """A first deployment: the sweep starts before the app's first upload, and meets a project
    whose clip was written and then deleted while it ran. The bucket is not empty any more,
    so the correction is an ordinary one, within the budget, and the breaker stays closed."""
    projects, objects = MemoryProjects(), MemoryObjects()
    engine = pipeline(projects, objects, max_destructive=50)
    suspect_an_empty_bucket(engine)
    objects.put(clip("p1"))
    ready_claiming(projects, "p0")
    assert engine.reconcile("p0", Trigger.SWEEP).action is Action.CORRECTED
    assert not engine.breaker.state.tripped
    del objects.objects[clip("p1")]
    ready_claiming(projects, "p2")
    assert engine.reconcile("p2", Trigger.SWEEP).action is Action.CORRECTED, \
        "a suspicion found false is dropped, not asked again"
