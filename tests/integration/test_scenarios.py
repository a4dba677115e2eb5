"""The seed's Scenarios 1-4 and the defects D1-D5, end to end against the real emulators."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from devkit.emulators import fake_gcs_server
from devkit.seed import World
from reel_reconciler.engine import Engine, Trigger
from reel_reconciler.model import Action, DriftKind
from reel_reconciler.stores.gcs import GcsStore
from tests.support.recording import TESTS

Make = Callable[..., Engine]


def test_scenario1_and_d1_stuck_generating_with_all_clips_in_gcs(world: World,
                                                                 make_engine: Make) -> None:
    """0 clips in the document, 15 in GCS, worker crashed: ready with all 15 restored."""
    _job, paths = world.generated_project(
        "pwYISGEqG6Oxb8sdtGoy", status="generating", prompts=15, in_gcs=15, in_db=0,
        job_status="processing", job_updated_ago=timedelta(hours=2), title="horizontal test 1")
    report = make_engine().reconcile("pwYISGEqG6Oxb8sdtGoy", Trigger.CLI)
    assert report.action is Action.CORRECTED
    assert (report.original_status, report.corrected_status) == ("generating", "ready")
    assert report.restored_clips == paths
    doc = world.project("pwYISGEqG6Oxb8sdtGoy")
    assert doc["status"] == "ready"
    assert doc["clipFilenames"] == paths
    assert doc["lastReconciliation"]["restoredClips"] == 15
    assert doc["title"] == "horizontal test 1"
    assert report.recovered_video_seconds == 15 * 8


def test_scenario2_partial_generation_with_live_worker_is_untouched(world: World,
                                                                   make_engine: Make) -> None:
    world.generated_project("p2", status="generating", prompts=15, in_gcs=7, in_db=7,
                            job_status="processing", job_updated_ago=timedelta(minutes=1))
    before = world.update_time("p2")
    report = make_engine().reconcile("p2", Trigger.CLI)
    assert report.action is Action.SKIPPED
    assert "active job" in (report.reason or "")
    assert world.update_time("p2") == before


def test_scenario2_partial_generation_after_crash_keeps_seven_clips(world: World,
                                                                   make_engine: Make) -> None:
    _, paths = world.generated_project("p2", status="generating", prompts=15, in_gcs=7,
                                       in_db=7, job_status="failed")
    report = make_engine().reconcile("p2", Trigger.CLI)
    doc = world.project("p2")
    assert report.action is Action.CORRECTED
    assert doc["status"] == "error"
    assert "after 7 of 15 clips" in doc["errorInfo"]["message"]
    assert doc["clipFilenames"] == paths[:7] + [None] * 8


def test_scenario3_crashed_job_is_failed_then_project_recovers(world: World,
                                                              make_engine: Make) -> None:
    from reel_reconciler.engine import cleanup_stale_jobs

    job, paths = world.generated_project(
        "p3", status="generating", prompts=15, in_gcs=3, in_db=3, job_status="processing",
        job_started_ago=timedelta(hours=2))
    result = cleanup_stale_jobs(make_engine())
    assert result.stale_jobs == [job]
    assert world.job(job)["status"] == "failed"
    assert world.job(job)["error"] == "Job timed out after 30 minutes"
    [report] = result.reports
    assert report.corrected_status == "error"
    doc = world.project("p3")
    assert doc["status"] == "error"
    assert doc["clipFilenames"] == paths[:3] + [None] * 12


def test_scenario4_false_claims(world: World, make_engine: Make) -> None:
    _, paths = world.generated_project("p4", status="ready", prompts=15, in_gcs=15, in_db=15)
    for i in (2, 9, 14):
        world.delete_object(paths[i])
    report = make_engine().reconcile("p4", Trigger.CLI)
    doc = world.project("p4")
    assert doc["status"] == "draft"
    assert [i for i, c in enumerate(doc["clipFilenames"]) if c is None] == [2, 9, 14]
    assert report.missing_clips == [paths[2], paths[9], paths[14]]
    assert report.verified_clips == 12
    assert report.claimed_clips == 15


def test_d2_storage_outage_is_an_error_not_a_missing_clip(
        world: World, make_engine: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GCS that cannot be reached must not downgrade a ready project or erase its paths."""
    world.generated_project("p-ready", status="ready", prompts=3, in_gcs=3, in_db=3)
    before = world.project("p-ready")
    nowhere = fake_gcs_server(tmp_path)  # configured, never started: nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{nowhere.host}")
    engine = make_engine(retry_deadline=2.0)
    report = engine.reconcile("p-ready", Trigger.SWEEP)
    assert report.action is Action.ERROR
    assert report.unreachable is True
    assert "gcs unreachable" in (report.error or "")
    assert world.project("p-ready") == before


def test_d3_running_generation_with_no_clips_is_not_killed(world: World,
                                                          make_engine: Make) -> None:
    world.generated_project("p-new", status="generating", prompts=3, in_gcs=0, in_db=0,
                            job_status="queued", job_created_ago=timedelta(seconds=5))
    report = make_engine().reconcile("p-new", Trigger.CLI)
    assert report.action is Action.SKIPPED
    assert world.project("p-new")["status"] == "generating"


class _AppWritesDuringList(GcsStore):
    """The app's worker writes the project while the engine is between its read and write.

    A real concurrent writer on a real Firestore; this subclass only chooses the moment.
    """

    def __init__(self, *args, world: World, project_id: str, clip: str, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self.world, self.project_id, self.clip = world, project_id, clip
        self.fired = False

    def list_prefix(self, prefix: str):  # type: ignore[no-untyped-def]
        objects = super().list_prefix(prefix)
        if not self.fired:
            self.fired = True
            writer = threading.Thread(target=self._app_update)
            writer.start()
            writer.join()
        return objects

    def _app_update(self) -> None:
        ref = self.world.projects().document(self.project_id)
        ref.update({"clipFilenames": [None, self.clip, None], "title": "renamed by the app"})


def test_d4_concurrent_app_write_survives_and_engine_rereads(world: World,
                                                            make_engine: Make) -> None:
    _job, paths = world.generated_project("p-race", status="generating", prompts=3, in_gcs=1,
                                         in_db=0, job_status="failed")
    world.put_object(paths[1])
    probe = make_engine()
    gcs = _AppWritesDuringList(probe.settings, TESTS, world=world, project_id="p-race",
                               clip=paths[1])
    report = make_engine(gcs=gcs).reconcile("p-race", Trigger.CLI)
    assert gcs.fired
    assert report.action is Action.CORRECTED
    assert report.attempts == 2, "the precondition should have failed once"
    doc = world.project("p-race")
    assert doc["title"] == "renamed by the app"
    # The app's slot 1 clip survived; slot 0 was restored in the re-decided write.
    assert doc["clipFilenames"] == [paths[0], paths[1], None]
    assert doc["status"] == "error"


def test_d5_failed_generation_keeps_error_across_passes(world: World, make_engine: Make) -> None:
    world.generated_project("p-fail", status="generating", prompts=4, in_gcs=0, in_db=0,
                            job_status="failed")
    engine = make_engine()
    first = engine.reconcile("p-fail", Trigger.SWEEP)
    assert first.corrected_status == "error"
    written = world.update_time("p-fail")
    error_info = world.project("p-fail")["errorInfo"]
    assert "0 of 4" in error_info["message"]
    for _ in range(2):
        again = engine.reconcile("p-fail", Trigger.SWEEP)
        assert again.action is Action.NO_CHANGE
        assert again.corrected_status == "error"
    assert world.update_time("p-fail") == written
    assert world.project("p-fail")["errorInfo"] == error_info


def test_leaving_error_keeps_previous_error_info(world: World, make_engine: Make) -> None:
    world.generated_project("p-err", status="error", prompts=2, in_gcs=2, in_db=1,
                            job_status="failed", errorInfo={"message": "quota exceeded"})
    make_engine().reconcile("p-err", Trigger.CLI)
    doc = world.project("p-err")
    assert doc["status"] == "ready"
    assert doc["errorInfo"] is None
    assert doc["lastReconciliation"]["previousErrorInfo"] == {"message": "quota exceeded"}


def test_observe_mode_reports_drift_and_writes_nothing(world: World, make_engine: Make) -> None:
    world.generated_project("p-obs", status="generating", prompts=2, in_gcs=2, in_db=0,
                            job_status="failed")
    before = world.update_time("p-obs")
    report = make_engine().reconcile("p-obs", Trigger.CLI, dry_run=True)
    assert report.action is Action.DRIFT
    assert DriftKind.STUCK_GENERATING in report.drift_kinds
    assert world.update_time("p-obs") == before


def test_settle_window_applies_to_automatic_triggers_only(world: World,
                                                         make_engine: Make) -> None:
    world.generated_project("p-new", status="ready", prompts=1, in_gcs=1, in_db=0,
                            job_status="failed")
    engine = make_engine(settle="1h")
    assert engine.reconcile("p-new", Trigger.LISTENER).action is Action.SKIPPED
    assert engine.reconcile("p-new", Trigger.CLI).action is Action.CORRECTED


def test_claim_outside_prefix_is_checked_by_metadata(world: World, make_engine: Make) -> None:
    elsewhere = world.put_object("shared/library/intro.mp4")
    gone = "shared/library/removed.mp4"
    _, paths = world.generated_project("p-out", status="ready", prompts=3, in_gcs=1, in_db=1)
    world.projects().document("p-out").update(
        {"clipFilenames": [paths[0], f"gs://{world.bucket}/{elsewhere}", gone]})
    engine = make_engine()
    report = engine.reconcile("p-out", Trigger.CLI)
    assert report.verified_clips == 2
    assert report.missing_clips == [gone]
    doc = world.project("p-out")
    assert doc["clipFilenames"] == [paths[0], f"gs://{world.bucket}/{elsewhere}", None]
    assert engine.gcs.requests.total() == 1 + 2  # one listing, two metadata reads


def test_stale_job_touched_concurrently_is_not_failed(world: World, make_engine: Make) -> None:
    from reel_reconciler.engine import cleanup_stale_jobs

    job, _ = world.generated_project("p-hb", status="generating", prompts=2, in_gcs=0,
                                     in_db=0, job_status="processing",
                                     job_updated_ago=timedelta(hours=1))
    engine = make_engine()
    [doc] = engine.firestore.active_jobs()
    # The worker heartbeats after our read: the precondition must stop the failure.
    world.jobs().document(job).update({"updatedAt": world.job(job)["createdAt"]
                                       + timedelta(hours=2)})
    from reel_reconciler.engine.stale import mark_failed
    from reel_reconciler.model import Job

    assert mark_failed(engine, Job.parse(doc.id, doc.data, doc.update_time), doc.data) is False
    assert world.job(job)["status"] == "processing"
    assert cleanup_stale_jobs(engine).stale_jobs == []


def test_the_sweep_reads_the_opt_out_field_it_is_told(world: World, make_engine: Make) -> None:
    """The sweep reads only the fields it needs: the opt-out field is one of them, by the
    name configured, whatever it is."""
    from reel_reconciler.engine import sweep

    world.generated_project("p-kept", status="generating", prompts=2, in_gcs=2, in_db=0,
                            job_status="failed", keepOff=True)
    world.generated_project("p-other", status="generating", prompts=2, in_gcs=2, in_db=0,
                            job_status="failed", reconcilerOptOut=True)
    before = world.update_time("p-kept")
    result = sweep(make_engine(opt_out_field="keepOff"))
    reports = {r.project_id: r for r in result.reports}
    assert reports["p-kept"].action is Action.SKIPPED
    assert reports["p-kept"].reason == "opted out: keepOff is true, nothing is written"
    assert DriftKind.STUCK_GENERATING in reports["p-kept"].drift_kinds
    assert world.update_time("p-kept") == before
    assert reports["p-other"].action is Action.CORRECTED, "another name is just a field"
