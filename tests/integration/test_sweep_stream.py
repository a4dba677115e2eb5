"""The streaming sweep (issue #6) against the emulators: the same reports as one targeted
reconcile per project, with one listing of the bucket instead of one per project.

User and project ids are chosen to hit GCS's byte order: `ab-c/` and `ab.c/` sort before
`ab/`, while Firestore orders `ab` first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY

from devkit.seed import World
from reel_reconciler.engine import Engine, Trigger, sweep
from reel_reconciler.model import Action, Report

Make = Callable[..., Engine]

# Each is a prefix of the next, or continues it with a byte just below or above "/".
TRAP_USERS = ["a", "ab", "ab-c", "ab-c-d", "ab.c", "ab0", "ab_c", "b", "é", "z-last"]
TRAP_SUFFIXES = ["", "-1", ".1", "0"]
"""Project ids of user u are q{u}{suffix}: `q03-1/` sorts before `q03/` in the listing too."""


def _seed_mixed(world: World) -> dict[str, int]:
    """A little of everything a sweep meets; returns counts the assertions need."""
    outside = 0
    for u, user in enumerate(TRAP_USERS):
        for p, suffix in enumerate(TRAP_SUFFIXES):
            pid = f"q{u:02d}{suffix}"
            kind = (u + p) % 8
            if kind == 0:
                world.generated_project(pid, user=user, status="ready", prompts=3, in_gcs=3,
                                        in_db=3)
            elif kind == 1:  # Scenario 4: clips deleted behind a ready project
                world.generated_project(pid, user=user, status="ready", prompts=4,
                                        in_gcs=[0, 2], in_db=4)
            elif kind == 2:  # D1: stuck generating, clips in GCS only, worker dead
                world.generated_project(pid, user=user, status="generating", prompts=3,
                                        in_gcs=3, in_db=0, job_status="processing",
                                        job_updated_ago=timedelta(hours=2))
            elif kind == 3:  # D3: a live worker owns it
                world.generated_project(pid, user=user, status="generating", prompts=3,
                                        in_gcs=1, in_db=1, job_status="processing",
                                        job_updated_ago=timedelta(minutes=1))
            elif kind == 4:  # D5: failed with no clip stays error
                world.generated_project(pid, user=user, status="error", prompts=2, in_gcs=0,
                                        in_db=0, job_status="failed",
                                        errorInfo={"message": "boom"})
            elif kind == 5:  # partial draft, a stitched file that is gone
                world.generated_project(pid, user=user, status="draft", prompts=5, in_gcs=2,
                                        in_db=2,
                                        stitchedFilename=world.stitched_path(user, pid))
            elif kind == 6:  # stitched file present, older job with a different prompt count
                world.add_job(pid, user=user, prompt_count=7, created_ago=timedelta(days=2))
                world.put_object(world.stitched_path(user, pid))
                world.generated_project(pid, user=user, status="ready", prompts=2, in_gcs=2,
                                        in_db=2,
                                        stitchedFilename=world.stitched_path(user, pid))
            else:  # a draft never generated: no job, no object
                world.add_project(pid, user=user, status="draft", prompts=2)
    # Claims outside the project's prefix: each needs its own metadata read.
    borrowed = world.put_object(world.clip_path("ab", "elsewhere", "reeljob-000000000000", 0))
    world.add_project("borrower", user="ab-c", status="ready", prompts=2,
                      clips=[borrowed, f"gs://{world.bucket}/reel-maker/gone/x/clip.mp4"])
    outside += 2
    # An active job filed under another user still holds its project.
    world.generated_project("misfiled", user="ab.c", status="generating", prompts=2, in_gcs=1,
                            in_db=1, job_status="failed")
    world.add_job("misfiled", user="someone-else", status="queued", prompt_count=2,
                  created_ago=timedelta(minutes=2))
    # Objects of users with no project, before, between and after the real ones.
    for user in ("0-orphan", "ab-b", "zz-orphan"):
        world.put_object(world.clip_path(user, "gone", "reeljob-000000000000", 0))
    # Malformed documents: skipped and reported, whatever their userId.
    world.projects().document("bad-no-user").set({"status": "ready", "promptList": ["a"]})
    world.projects().document("bad-slash-user").set(
        {"userId": "ab/c", "status": "ready", "promptList": ["a"]})
    world.projects().document("bad-int-user").set(
        {"userId": 7, "status": "ready", "promptList": ["a"]})
    world.projects().document("bad-status").set(
        {"userId": "ab", "status": "exploded", "promptList": ["a"]})
    world.projects().document("bad-traversal").set(
        {"userId": "ab", "status": "ready", "promptList": ["a"],
         "clipFilenames": ["reel-maker/ab/x/../../../etc/passwd"]})
    return {"outside": outside}


def _targeted(engine: Engine, project_ids: list[str]) -> dict[str, dict[str, Any]]:
    return {pid: engine.reconcile(pid, Trigger.SWEEP, dry_run=True).as_json()
            for pid in project_ids}


def _streamed(engine: Engine, dry_run: bool = True) -> tuple[dict[str, dict[str, Any]], Any]:
    seen: list[Report] = []
    result = sweep(engine, dry_run=dry_run, on_report=seen.append)
    reports = {report.project_id: report.as_json() for report in seen}
    assert len(reports) == len(seen), "a project was reconciled twice"
    return reports, result


def _decided(report: dict[str, Any]) -> dict[str, Any]:
    """A report without the reading of the clock (how long the project had been wrong):
    the two passes run moments apart."""
    return {**report, "healSeconds": "healSeconds" in report}


def test_streaming_sweep_matches_targeted_reconciles(world: World, make_engine: Make) -> None:
    counts = _seed_mixed(world)
    project_ids = sorted(doc.id for doc in world.projects().stream())
    objects = len(world.object_names())

    streamed, result = _streamed(make_engine(gcs_page_size=3, page_size=4))
    assert result.aborted is None
    assert sorted(streamed) == project_ids
    targeted = _targeted(make_engine(), project_ids)
    for pid in project_ids:
        assert _decided(streamed[pid]) == _decided(targeted[pid]), pid

    actions = {report["action"] for report in streamed.values()}
    assert {"drift", "no_change", "skipped"} <= actions
    assert streamed["misfiled"]["action"] == "skipped"
    assert "active job" in streamed["misfiled"]["reason"]
    for bad in ("bad-no-user", "bad-slash-user", "bad-int-user", "bad-status",
                "bad-traversal"):
        assert streamed[bad]["driftKinds"] == ["invalid_document"], bad

    # One listing of the bucket in pages of 3, plus one metadata read per outside claim;
    # nothing per project.
    assert result.gcs_requests <= math.ceil(objects / 3) + counts["outside"] + 1
    assert result.gcs_requests < len(project_ids)


def test_enforcing_streaming_sweep_corrects_then_writes_nothing(world: World,
                                                               make_engine: Make) -> None:
    _seed_mixed(world)
    engine = make_engine(gcs_page_size=3, page_size=4)
    first, result = _streamed(engine, dry_run=False)
    corrected = sorted(pid for pid, report in first.items() if report["action"] == "corrected")
    assert corrected
    assert result.actions[Action.CORRECTED] == len(corrected)
    restored = [pid for pid, report in first.items() if report["restoredClips"]]
    assert restored
    for pid in restored:  # D1: restored from GCS
        assert world.project(pid)["clipFilenames"] == first[pid]["restoredClips"]
    times = {doc.id: doc.update_time for doc in world.projects().stream()}

    second, again = _streamed(engine, dry_run=False)
    assert "corrected" not in {report["action"] for report in second.values()}
    assert {doc.id: doc.update_time for doc in world.projects().stream()} == times
    assert again.scanned == result.scanned


def test_sweep_requests_do_not_grow_with_projects(world: World, make_engine: Make) -> None:
    """60 ready projects of 2 clips under 12 users: pages of objects, not lists per project."""
    for i in range(60):
        world.generated_project(f"proj-{i:03d}", user=f"user-{i % 12:02d}", status="ready",
                                prompts=2, in_gcs=2, in_db=2)
    result = sweep(make_engine(gcs_page_size=50, page_size=25), dry_run=True)
    assert result.actions == {"no_change": 60}
    assert result.gcs_requests == math.ceil(120 / 50)
    # Active jobs, 3 pages of projects, 3 of jobs, one count.
    assert result.firestore_requests == 1 + 3 + 3 + 1


def test_a_sweep_counts_the_documents_it_reads(world: World, make_engine: Make) -> None:
    """What Firestore bills a sweep: every project and job streamed, the active-jobs query
    (one read when it finds none) and a count() under 1,000 entries; the metric agrees."""
    for i in range(60):
        world.generated_project(f"proj-{i:03d}", user=f"user-{i % 12:02d}", status="ready",
                                prompts=2, in_gcs=2, in_db=2)
    jobs = sum(1 for _ in world.db.collection(world.jobs_collection).stream())
    assert jobs >= 60
    engine = make_engine(gcs_page_size=50, page_size=25)
    labels = {"reconciler": engine.reconciler.label, "trigger": "sweep"}
    name = "reel_reconciler_firestore_documents_read_total"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    result = sweep(engine, dry_run=True)
    assert result.scanned == 60
    assert result.documents_read == 60 + jobs + 1 + 1
    assert (REGISTRY.get_sample_value(name, labels) or 0.0) - before == result.documents_read
    assert result.gcs_class_a == math.ceil(120 / 50)
    assert result.gcs_class_b == 0


def test_a_sweep_that_keeps_no_reports_counts_the_same(world: World, make_engine: Make) -> None:
    """The operator's sweeps keep counts only: memory must not grow with the drift found."""
    _seed_mixed(world)
    kept = sweep(make_engine(page_size=4), dry_run=True)
    seen: list[Report] = []
    counted = sweep(make_engine(page_size=4), dry_run=True, on_report=seen.append,
                    keep_reports=False)
    assert kept.reports
    assert counted.reports == []
    assert counted.actions == kept.actions
    assert counted.scanned == kept.scanned == len(seen)
    assert sorted(r.project_id for r in seen if r.action is not Action.NO_CHANGE) == [
        r.project_id for r in kept.reports]
