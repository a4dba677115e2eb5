"""The app simulator races the engine: the app's real write patterns against the policy,
on Google's Firestore emulator and fake-gcs-server.

Our writes are counted by a recording store (it observes the real store's successful writes);
the app's writes are blind, as the app's are.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest

from devkit.app import Generation, ReelApp, Timing
from devkit.history import History
from devkit.notifications import Notifications
from devkit.seed import World
from reel_reconciler.engine import Engine, Trigger, cleanup_stale_jobs, sweep
from reel_reconciler.model import Action, DriftKind, ReconcilerId, Report
from reel_reconciler.runtime import Hooks, ReconcilerRuntime
from reel_reconciler.spec import ReconcilerSpec
from tests.conftest import settings_for
from tests.soak.checker import Timing as CheckerTiming
from tests.soak.checker import check
from tests.support.harness import metric
from tests.support.patience import bound, wait_for
from tests.support.recording import RecordingFirestore, recording_engine
from tests.support.running import running

Cli = Callable[..., Any]


def engine_for(world: World, **overrides: Any) -> Engine:
    return recording_engine(settings_for(world, **overrides))


def writes(engine: Engine, project_id: str, since: float = 0.0) -> list[dict[str, Any]]:
    store = engine.firestore
    assert isinstance(store, RecordingFirestore)
    return store.written(project_id, since)


@contextmanager
def reconciling(engine: Engine, project_id: str, pause: float = 0.05) -> Iterator[list[Report]]:
    """Forced reconciles of one project in a loop, as an impatient operator would."""
    reports: list[Report] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            reports.append(engine.reconcile(project_id, Trigger.CLI))
            stop.wait(pause)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield reports
    finally:
        stop.set()
        thread.join(30)


def hung_after_one_clip(app: ReelApp, project_id: str) -> Generation:
    """A generation of 3 prompts whose worker stops answering after its first clip."""
    app.create_project(project_id, prompts=3)
    generation = app.generation(project_id, hang_at=1).start().run_in_thread()
    assert generation.hanging.wait(bound(10))
    return generation


@pytest.fixture
def app(world: World) -> ReelApp:
    return ReelApp(world, Timing(window=0.1, per_prompt=0.3, exists_check=0.2))


def test_live_generation_is_never_written_and_ends_ready(world: World, app: ReelApp) -> None:
    app.create_project("p-live", prompts=4)
    engine = engine_for(world, settle="5s")
    generation = app.generation("p-live").start()
    with reconciling(engine, "p-live") as reports:
        generation.run_in_thread()
        assert generation.join(bound(60)) == "completed"
    assert writes(engine, "p-live") == []
    # The last reconcile may read the finished project: no_change is fine, a write is not.
    assert len(reports) > 5
    assert all(r.action in (Action.SKIPPED, Action.NO_CHANGE)
                                    for r in reports)
    assert sum(r.action is Action.SKIPPED for r in reports) >= len(reports) - 1
    doc = world.project("p-live")
    assert doc["status"] == "ready"
    assert doc["clipFilenames"] == generation.made
    assert all(not name.startswith("gs://") for name in generation.made)
    assert engine.reconcile("p-live", Trigger.CLI).action is Action.NO_CHANGE


def test_live_generation_raced_by_the_cli(world: World, app: ReelApp, cli: Cli) -> None:
    app.timing.per_prompt = 1.0
    app.create_project("p-cli", prompts=3)
    generation = app.generation("p-cli").start().run_in_thread()
    outputs = []
    while not generation.finished.is_set():
        outputs.append(cli("reconcile", "p-cli", "--output", "json",
                           env={"REEL_SETTLE": "5s"}))
    generation.join(bound(60))
    assert outputs
    for done in outputs:
        assert done.returncode == 0, done.stderr
        assert '"corrected"' not in done.stdout, done.stdout
    assert world.project("p-cli")["status"] == "ready"
    assert "lastReconciliation" not in world.project("p-cli")


def test_partial_failure_keeps_error_message_and_clips(world: World, app: ReelApp) -> None:
    app.create_project("p-fail", prompts=4)
    engine = engine_for(world, settle="5s")
    generation = app.generation("p-fail", fail_at=2).start()
    with reconciling(engine, "p-fail"):
        generation.run_in_thread()
        assert generation.join(bound(60)) == "failed"
    settled = engine_for(world)
    for _ in range(3):
        report = settled.reconcile("p-fail", Trigger.CLI)
        assert report.action is Action.NO_CHANGE
        assert report.corrected_status == "error"
    assert sweep(settled).actions == {"no_change": 1}
    assert writes(engine, "p-fail") == []
    assert writes(settled, "p-fail") == []
    doc = world.project("p-fail")
    assert doc["status"] == "error"
    assert "quota exceeded" in doc["errorInfo"]["message"]
    assert doc["clipFilenames"] == [*generation.made, None, None]


def test_zombie_worker_is_not_fought_and_its_result_stands(world: World, app: ReelApp) -> None:
    engine = engine_for(world, stale_timeout="2s", settle="1s")
    generation = hung_after_one_clip(app, "p-zombie")
    time.sleep(2.5)
    cleanup = cleanup_stale_jobs(engine)
    assert cleanup.stale_jobs == [generation.job_id]
    job = world.job(generation.job_id)
    assert job["status"] == "failed"
    assert job["timedOutAt"] == job["updatedAt"]
    assert world.project("p-zombie")["status"] == "error"
    assert "after 1 of 3 clips" in world.project("p-zombie")["errorInfo"]["message"]

    resumed = time.monotonic()
    generation.resume()
    with reconciling(engine, "p-zombie") as reports:
        assert generation.join(bound(60)) == "completed"
    assert len(writes(engine, "p-zombie", since=resumed)) <= 1
    assert any("revived" in (r.reason or "") for r in reports)
    doc = world.project("p-zombie")
    assert doc["status"] == "ready"
    assert doc["clipFilenames"] == generation.made
    assert world.job(generation.job_id)["status"] == "completed"
    assert engine.reconcile("p-zombie", Trigger.CLI).action is Action.NO_CHANGE


def test_zombie_after_the_apps_own_cleanup(world: World, app: ReelApp) -> None:
    engine = engine_for(world, stale_timeout="2s", settle="1s")
    generation = hung_after_one_clip(app, "p-cron")
    time.sleep(0.5)
    assert app.timeout_cleanup(minutes=0.005) == [generation.job_id]
    # Hands off while the app's marking is recent: the app already set a sane error.
    report = engine.reconcile("p-cron", Trigger.CLI)
    assert report.action is Action.SKIPPED
    assert "revived" in (report.reason or "")
    generation.resume()
    with reconciling(engine, "p-cron"):
        assert generation.join(bound(60)) == "completed"
    assert writes(engine, "p-cron") == []
    assert world.project("p-cron")["status"] == "ready"


def test_worker_dead_after_the_apps_cleanup_keeps_the_apps_message(world: World,
                                                                   app: ReelApp) -> None:
    engine = engine_for(world, stale_timeout="2s", settle="1s")
    generation = hung_after_one_clip(app, "p-dead")
    app.timeout_cleanup(minutes=0)
    generation.crash()
    generation.join(bound(60))
    time.sleep(2.5)
    report = engine.reconcile("p-dead", Trigger.SWEEP)
    assert report.action is Action.NO_CHANGE
    assert report.corrected_status == "error"
    assert world.project("p-dead")["errorInfo"]["message"].startswith("Generation timed out")


def test_scenario1_clips_under_an_older_job_end_ready(world: World, app: ReelApp,
                                                      cli: Cli) -> None:
    """The old start wrote `clipFilenames: []`; its job then died before any clip."""
    app.timing = Timing()
    app.create_project("p-s1", prompts=5)
    first = app.generation("p-s1").start()
    assert first.run() == "completed"
    second = app.generation("p-s1", wipe=True, hang_at=0).start().run_in_thread()
    assert second.hanging.wait(bound(10))
    second.crash()
    second.join(bound(60))
    assert world.project("p-s1")["clipFilenames"] == []
    time.sleep(2.2)
    done = cli("cleanup-stale-jobs", "--output", "json", env={"REEL_STALE_TIMEOUT": "2s"})
    assert done.returncode == 0, done.stderr
    doc = world.project("p-s1")
    assert doc["status"] == "ready"
    assert doc["clipFilenames"] == first.made
    assert all(name.startswith(f"{world.root_prefix}/") for name in doc["clipFilenames"])
    [report] = json.loads(done.stdout)["reports"]
    assert {"restored_clip", "stuck_generating"} <= set(report["driftKinds"])


def test_stitch_that_never_finishes_heals_after_its_timeout(world: World, app: ReelApp) -> None:
    app.timing = Timing()
    app.create_project("p-st", prompts=2)
    app.generation("p-st").start().run()
    app.stitch("p-st")
    engine = engine_for(world, stitch_timeout="2s")
    fresh = engine.reconcile("p-st", Trigger.CLI)
    assert fresh.action is Action.SKIPPED
    assert "stitch in progress" in (fresh.reason or "")
    time.sleep(2.2)
    healed = engine.reconcile("p-st", Trigger.CLI)
    assert healed.action is Action.CORRECTED
    assert DriftKind.STUCK_STITCHING in healed.drift_kinds
    assert world.project("p-st")["status"] == "ready"
    assert world.project("p-st")["stitchedFilename"] is None
    assert engine.reconcile("p-st", Trigger.CLI).action is Action.NO_CHANGE


def test_stitcher_that_died_after_its_upload_gets_its_reel_back(world: World,
                                                                app: ReelApp) -> None:
    app.timing = Timing()
    app.create_project("p-up", prompts=2)
    app.generation("p-up").start().run()
    time.sleep(1.1)  # GCS times have a second's grain: the reel must be newer than the clips
    reel = app.stitch("p-up").upload()
    time.sleep(2.2)
    engine = engine_for(world, stitch_timeout="2s")
    report = engine.reconcile("p-up", Trigger.SWEEP)
    assert report.restored_stitched == reel
    assert DriftKind.RESTORED_STITCHED in report.drift_kinds
    doc = world.project("p-up")
    assert (doc["status"], doc["stitchedFilename"]) == ("ready", reel)


def test_fresh_and_finished_stitches_are_never_written(world: World, app: ReelApp) -> None:
    app.timing = Timing()
    app.create_project("p-ok", prompts=2)
    app.generation("p-ok").start().run()
    engine = engine_for(world, settle="1s")
    stitch = app.stitch("p-ok")
    with reconciling(engine, "p-ok") as reports:
        time.sleep(1.5)
        reel = stitch.succeed()
        time.sleep(1.5)
    assert writes(engine, "p-ok") == []
    assert any("stitch in progress" in (r.reason or "") for r in reports)
    assert world.project("p-ok")["stitchedFilename"] == reel


def test_regenerate_route_before_its_job_is_left_alone(world: World, app: ReelApp,
                                                       cli: Cli) -> None:
    app.timing = Timing(per_prompt=0.3)
    app.create_project("p-regen", prompts=3)
    first = app.generation("p-regen").start()
    first.run()
    engine = engine_for(world, settle="5s")
    regenerate = app.regenerate_clip("p-regen", 1)
    forced = engine.reconcile("p-regen", Trigger.CLI)
    assert forced.action is Action.SKIPPED
    assert "generation starting" in (forced.reason or "")
    by_cli = cli("reconcile", "p-regen", "--output", "json", env={"REEL_SETTLE": "5s"})
    assert '"skipped"' in by_cli.stdout
    assert "generation starting" in by_cli.stdout
    with reconciling(engine, "p-regen"):
        regenerate.start()
        assert regenerate.run() == "completed"
    assert writes(engine, "p-regen") == []
    doc = world.project("p-regen")
    assert doc["status"] == "ready"
    assert doc["clipFilenames"] == [first.made[0], regenerate.made[0], first.made[2]]


def test_shapes_the_app_writes_are_valid_documents(world: World) -> None:
    _, paths = world.generated_project("p-long", status="ready", prompts=2, in_gcs=2, in_db=2)
    world.projects().document("p-long").update({"clipFilenames": [*paths, None, paths[0]]})
    world.generated_project("p-empty", status="draft", prompts=3, in_gcs=0, in_db=0)
    world.projects().document("p-empty").update({"clipFilenames": []})
    _, short = world.generated_project("p-short", status="error", prompts=3, in_gcs=1,
                                       in_db=1, job_status="failed",
                                       errorInfo={"message": "stitch failed",
                                                  "timestamp": datetime.now(UTC)})
    world.projects().document("p-short").update({"clipFilenames": [short[0]]})
    world.add_project("p-bare", status="error", prompts=2, clips=[None, None])
    result = sweep(engine_for(world))
    kinds = {kind for report in result.reports for kind in report.drift_kinds}
    assert DriftKind.INVALID_DOCUMENT not in kinds
    assert result.actions[Action.SKIPPED] == 0
    assert world.project("p-bare")["status"] == "error"
    assert world.project("p-short")["errorInfo"]["message"] == "stitch failed"
    assert world.project("p-long")["clipFilenames"] == [*paths, None, paths[0]]


def race_runtime(spec: ReconcilerSpec, hooks: Hooks | None = None) -> ReconcilerRuntime:
    """A runtime as the operator runs one (listeners, queue, timers), our writes recorded."""
    return ReconcilerRuntime(ReconcilerId("race", "test"), spec, connector=recording_engine,
                             hooks=hooks)


def race_live_and_failing(world: World, app: ReelApp, runtime: ReconcilerRuntime) -> None:
    """A generation that succeeds and one that fails at prompt 2, while `runtime` runs: the
    reconciler writes neither, and each ends as its worker left it."""
    app.create_project("p-ok", prompts=3)
    app.create_project("p-bad", prompts=4)
    ok = app.generation("p-ok").start().run_in_thread()
    bad = app.generation("p-bad", fail_at=2).start().run_in_thread()
    assert (ok.join(bound(60)), bad.join(bound(60))) == ("completed", "failed")
    time.sleep(2.5)  # past the settle window, for the last events to be judged
    assert runtime.engine is not None
    assert writes(runtime.engine, "p-ok") == []
    assert writes(runtime.engine, "p-bad") == []
    assert world.project("p-ok")["status"] == "ready"
    bad_doc = world.project("p-bad")
    assert bad_doc["status"] == "error"
    assert "quota" in bad_doc["errorInfo"]["message"]


def spec_of(world: World, **storage: Any) -> ReconcilerSpec:
    return ReconcilerSpec.parse({
        "firestore": {"projectsCollection": world.projects_collection,
                      "jobsCollection": world.jobs_collection},
        "storage": {"bucket": world.bucket, **storage}, "settle": "1s"})


def test_listener_path_never_writes_a_live_or_failing_generation(world: World,
                                                                 app: ReelApp) -> None:
    with running(race_runtime(spec_of(world))) as runtime:
        race_live_and_failing(world, app, runtime)


def test_notification_path_never_writes_a_live_or_failing_generation(
        notified: tuple[World, Notifications]) -> None:
    """Every clip the workers upload is a notification that queues its project while its
    job is alive: the hands-off rules hold for this trigger too."""
    world, notes = notified
    app = ReelApp(world, Timing(window=0.1, per_prompt=0.3, exists_check=0.2))
    with running(race_runtime(spec_of(world, notifications={"subscription": notes.path}))
                 ) as runtime:
        race_live_and_failing(world, app, runtime)
        text = generate_latest().decode()
    assert metric(text, "reel_reconciler_notifications_total", reconciler=runtime.label,
                  event_type="OBJECT_FINALIZE", outcome="queued") >= 3 + 2


def test_a_correction_the_app_keeps_undoing_is_held_not_fought(world: World,
                                                               app: ReelApp) -> None:
    """Another writer (an old deployment of the app with its own idea of the project) puts
    the project back each time we correct it. After two corrections the project is held:
    reported as flapping, told once, counted, and written again only after the hold. The
    soak's checker, which knows nothing of the policy, sees no write war in the history."""
    world.generated_project("p-flap", status="generating", prompts=2, in_gcs=2, in_db=0,
                            job_status="failed")
    back = {"status": "generating", "clipFilenames": []}
    told: list[Report] = []

    async def flapping(report: Report) -> None:
        told.append(report)

    stale, hold = timedelta(seconds=8), timedelta(seconds=10)
    spec = ReconcilerSpec.parse({
        "firestore": {"projectsCollection": world.projects_collection,
                      "jobsCollection": world.jobs_collection},
        "storage": {"bucket": world.bucket}, "settle": "1s",
        "staleJobs": {"timeout": f"{stale.seconds}s"},
        "flapping": {"corrections": 2, "window": "10m", "hold": f"{hold.seconds}s"}})
    history = History(world)
    history.start(timeout=bound(30))
    try:
        with running(race_runtime(spec, Hooks(on_flapping=flapping))) as runtime:
            assert runtime.engine is not None
            engine = runtime.engine

            def written(n: int) -> Callable[[], bool]:
                return lambda: len(writes(engine, "p-flap")) == n

            for n in (1, 2):
                wait_for(written(n), 30, f"correction {n}")
                app.update_project("p-flap", back)
            wait_for(lambda: told, 30, "the project to be held")
            for _ in range(3):  # the other writer goes on; a held project is not fought
                app.update_project("p-flap", back)
            wait_for(written(3), 60, lambda: f"the correction after the hold; told: {told}")
            text = generate_latest().decode()
            label = runtime.label
    finally:
        history.stop()
    [held] = told
    assert held.action is Action.SKIPPED
    assert DriftKind.FLAPPING in held.drift_kinds
    assert held.held_until is not None
    assert (held.reason or "").startswith("flapping:")
    assert metric(text, "reel_reconciler_flapping_holds_total", reconciler=label) == 1
    assert metric(text, "reel_reconciler_drift_detected_total", reconciler=label,
                  kind="flapping") >= 1
    made = [fields["lastReconciliation"]["at"] for fields in writes(engine, "p-flap")]
    assert made[1] < held.held_until <= made[2], "written again only after the hold"
    assert world.project("p-flap")["status"] == "ready"
    verdict = check(history, CheckerTiming(stale=stale, settle=timedelta(seconds=1),
                                           sweep=timedelta(hours=1), stitch=stale),
                    [], {}, [], datetime.now(UTC))
    assert verdict.writes == 3
    assert verdict.violations["write_war"] == 0, verdict.examples
    assert verdict.violations["precondition"] == 0, verdict.examples
