"""The engine's batch pipeline on stores in memory: one project is a batch of one, one conflict
loop, one outage short-circuit, each project's own duration, every write guarded."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from devkit.memory import EPOCH, MemoryObjects, MemoryProjects
from reel_reconciler.config import Settings
from reel_reconciler.engine.changelog import loggable, rfc3339
from reel_reconciler.engine.reconcile import Pipeline, Prefetched
from reel_reconciler.engine.recorder import Recorder
from reel_reconciler.logs import CHANGES
from reel_reconciler.model import Action, Report, Trigger
from reel_reconciler.stores import Conflict
from tests.support.patience import bound
from tests.support.recording import TESTS

NOW = EPOCH + timedelta(days=1)
ROOT = "reel-maker"


class Kept(Recorder):
    """Keeps what the pipeline records (the metrics and logs are the recorder's own tests)."""

    def __init__(self) -> None:
        super().__init__(TESTS)
        self.seen: list[tuple[Report, float]] = []

    def record(self, report: Report, trigger: Trigger, seconds: float) -> None:
        super().record(report, trigger, seconds)
        self.seen.append((report, seconds))


def clip(project_id: str, i: int) -> str:
    return f"{ROOT}/u1/{project_id}/raw/job-{project_id}/prompt-{i:02d}/clip.mp4"


def stuck(projects: MemoryProjects, objects: MemoryObjects, project_id: str) -> None:
    """Generating for ever: its job failed, both clips are in the bucket, none in the doc."""
    projects.put_project(project_id, {
        "userId": "u1", "title": "t", "status": "generating", "durationSeconds": 8,
        "promptList": ["a", "b"], "clipFilenames": []})
    projects.put_job(f"job-{project_id}", {
        "projectId": project_id, "userId": "u1", "status": "failed", "promptCount": 2,
        "createdAt": EPOCH, "updatedAt": EPOCH})
    for i in range(2):
        objects.put(clip(project_id, i))


def pipeline(**overrides: Any) -> tuple[Pipeline, MemoryProjects, MemoryObjects, Kept]:
    settings = Settings(bucket="reels", root_prefix=ROOT, settle="0s", **overrides)
    projects, objects, kept = MemoryProjects(), MemoryObjects(), Kept()
    return Pipeline(settings, projects, objects, kept, clock=lambda: NOW), projects, objects, kept


def test_one_project_is_a_batch_of_one() -> None:
    engine, projects, objects, kept = pipeline()
    stuck(projects, objects, "p1")
    report = engine.reconcile("p1", Trigger.CLI)
    assert report.action is Action.CORRECTED
    assert report.corrected_status == "ready"
    assert projects.projects["p1"].data is not None
    assert projects.projects["p1"].data["clipFilenames"] == [clip("p1", 0), clip("p1", 1)]
    assert projects.requests.by_op() == {"get_projects": 1, "query_jobs": 1,
                                         "update_project": 1}
    assert [r.project_id for r, _ in kept.seen] == ["p1"]
    assert engine.reconcile("p1", Trigger.CLI).action is Action.NO_CHANGE


def test_a_burst_is_read_in_one_batch_and_written_in_one_commit() -> None:
    engine, projects, objects, _ = pipeline()
    ids = [f"p{i}" for i in range(5)]
    for project_id in ids:
        stuck(projects, objects, project_id)
    reports = engine.reconcile_many([*ids, "p0"], Trigger.LISTENER)
    assert [r.project_id for r in reports] == ids, "one report per project, in order"
    assert {r.action for r in reports} == {Action.CORRECTED}
    assert projects.requests.by_op() == {"get_projects": 1, "query_jobs": 1,
                                         "update_projects": 1}


def test_a_stale_read_is_read_again_and_decided_again_then_written() -> None:
    engine, projects, objects, _ = pipeline()
    ids = ["p0", "p1", "p2"]
    for project_id in ids:
        stuck(projects, objects, project_id)
    renamed = False

    def app_renames_p1() -> None:
        nonlocal renamed
        if not renamed:
            renamed = True
            data = dict(projects.projects["p1"].data or {})
            projects.put_project("p1", {**data, "title": "renamed by the app"})

    projects.before_commit = app_renames_p1
    reports = engine.reconcile_many(ids, Trigger.LISTENER)
    assert [(r.action, r.attempts) for r in reports] == [
        (Action.CORRECTED, 1), (Action.CORRECTED, 2), (Action.CORRECTED, 1)]
    p1 = projects.projects["p1"].data or {}
    assert p1["title"] == "renamed by the app"
    assert p1["status"] == "ready"
    made = projects.requests.by_op()
    assert made["get_projects"] == 2
    assert made["update_projects"] == 1
    assert made["update_project"] == 3 + 1  # one by one after the failed commit, then p1 again


def test_a_project_that_keeps_changing_is_given_up_after_max_attempts() -> None:
    engine, projects, objects, kept = pipeline(max_attempts=3)
    stuck(projects, objects, "p1")

    def app_writes_again() -> None:
        data = dict(projects.projects["p1"].data or {})
        projects.put_project("p1", {**data, "title": f"edit {len(projects.writes)}"})

    projects.before_commit = app_writes_again
    report = engine.reconcile("p1", Trigger.CLI)
    assert report.action is Action.CONFLICT
    assert report.attempts == 3
    assert projects.writes == []
    assert projects.requests.by_op()["get_projects"] == 3
    assert [r.action for r, _ in kept.seen] == [Action.CONFLICT]


def test_an_outage_stops_the_batch_after_the_first_project() -> None:
    engine, projects, objects, kept = pipeline()
    ids = [f"p{i}" for i in range(4)]
    for project_id in ids:
        stuck(projects, objects, project_id)
    objects.down = True
    reports = engine.reconcile_many(ids, Trigger.LISTENER)
    assert [r.action for r in reports] == [Action.ERROR] * 4
    assert all(r.unreachable for r in reports)
    assert ["not attempted" in (r.error or "") for r in reports] == [False, True, True, True]
    assert objects.requests.by_op() == {"list": 1}
    assert projects.writes == []
    assert len(kept.seen) == 4


def test_a_failed_read_fails_the_whole_batch_and_writes_nothing() -> None:
    engine, projects, objects, _ = pipeline()
    for project_id in ("p0", "p1"):
        stuck(projects, objects, project_id)
    projects.down = True
    reports = engine.reconcile_many(["p0", "p1"], Trigger.LISTENER)
    assert [(r.action, bool(r.unreachable)) for r in reports] == [(Action.ERROR, True)] * 2
    assert objects.requests.total() == 0


def test_each_project_records_its_own_duration() -> None:
    engine, projects, objects, kept = pipeline()
    for project_id in ("fast", "slow"):
        stuck(projects, objects, project_id)
    projects.put_project("calm", {"userId": "u1", "status": "draft", "promptList": ["a"],
                                  "clipFilenames": [None]})
    listing = bound(0.3)
    objects.slow[f"{ROOT}/u1/slow/"] = listing
    engine.reconcile_many(["calm", "slow", "fast"], Trigger.LISTENER)
    seconds = {report.project_id: taken for report, taken in kept.seen}
    assert seconds["calm"] < listing, "a project decided before the slow listing waits for it"
    assert seconds["slow"] >= listing
    assert seconds["fast"] >= listing


def test_dry_run_and_the_sweeps_reads_write_nothing() -> None:
    engine, projects, objects, _ = pipeline()
    stuck(projects, objects, "p1")
    doc = projects.projects["p1"]
    listed = tuple(objects.list_prefix(f"{ROOT}/u1/p1/"))
    jobs = projects.jobs_of_projects(["p1"])["p1"]
    before = projects.requests.total(), objects.requests.total()
    [report] = engine.reconcile_read([("p1", doc, Prefetched(jobs=jobs, objects=listed))],
                                     Trigger.SWEEP, dry_run=True)
    assert report.action is Action.DRIFT
    assert (projects.requests.total(), objects.requests.total()) == before
    assert projects.writes == []


@pytest.mark.parametrize("missing", [True, False])
def test_a_missing_document_is_an_error_not_a_write(missing: bool) -> None:
    engine, projects, objects, _ = pipeline()
    stuck(projects, objects, "p1")
    ids = ["gone", "p1"] if missing else ["p1"]
    reports = engine.reconcile_many(ids, Trigger.CLI)
    if missing:
        assert reports[0].action is Action.ERROR
        assert "not found" in (reports[0].error or "")
    assert reports[-1].action is Action.CORRECTED


def test_a_halted_pipeline_decides_but_writes_nothing() -> None:
    """A stop halts the engine before anything else: decided corrections are reported as
    not written, on every path (one alone, a batch, a batch after a conflict)."""
    engine, projects, objects, _ = pipeline()
    ids = ["p0", "p1", "p2"]
    for project_id in ids:
        stuck(projects, objects, project_id)
    before = {i: projects.projects[i] for i in ids}
    engine.halt()
    reports = [engine.reconcile("p0", Trigger.CLI), *engine.reconcile_many(ids[1:],
                                                                            Trigger.LISTENER)]
    assert {r.action for r in reports} == {Action.SKIPPED}
    assert all(r.reason == "not written: the reconciler is stopping" for r in reports)
    assert all(r.drift_kinds for r in reports), "the drift is still reported"
    assert projects.writes == []
    assert {i: projects.projects[i] for i in ids} == before
    assert "update_project" not in projects.requests.by_op()
    assert "update_projects" not in projects.requests.by_op()


def test_a_halt_between_a_conflict_and_its_retry_writes_nothing() -> None:
    engine, projects, objects, _ = pipeline()
    stuck(projects, objects, "p0")
    stuck(projects, objects, "p1")

    def app_writes_then_we_stop() -> None:
        if not engine.halted.is_set():
            data = dict(projects.projects["p1"].data or {})
            projects.put_project("p1", {**data, "title": "renamed"})
            engine.halt()

    projects.before_commit = app_writes_then_we_stop
    reports = engine.reconcile_many(["p0", "p1"], Trigger.LISTENER)
    assert projects.writes == []
    assert [r.action for r in reports] == [Action.SKIPPED, Action.SKIPPED]


def _changes(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The change log's lines, as the JSON formatter would show their fields."""
    keys = ("document", "projectId", "trigger", "driftKinds", "fields", "precondition",
            "outcome", "attempt", "updateTime")
    return [{key: getattr(record, key, None) for key in keys}
            for record in caplog.records if record.name == CHANGES]


def test_every_write_leaves_one_change_line_that_can_undo_it(
        caplog: pytest.LogCaptureFixture) -> None:
    """A commit of three, refused for p1 (the app wrote it since), then one by one: a line
    per project write, p1's conflict included (logged once its re-read shows the app's
    version), each with the values before and after."""
    caplog.set_level(logging.INFO, logger=CHANGES)
    engine, projects, objects, _ = pipeline()
    ids = ["p0", "p1", "p2"]
    for project_id in ids:
        stuck(projects, objects, project_id)
    projects.put_project("p2", {**(projects.projects["p2"].data or {}), "status": "error",
                                "errorInfo": {"message": "quota",
                                              "timestamp": EPOCH}})
    renamed: dict[str, Any] = {}

    def app_renames_p1() -> None:
        if not renamed:
            renamed.update(projects.projects["p1"].data or {}, title="renamed by the app")
            projects.put_project("p1", renamed)
            read_again["p1"] = projects.projects["p1"].update_time

    projects.before_commit = app_renames_p1
    read = {i: projects.projects[i] for i in ids}
    read_again = {i: read[i].update_time for i in ids}
    engine.reconcile_many(ids, Trigger.LISTENER)
    lines = _changes(caplog)
    assert [(c["projectId"], c["outcome"], c["attempt"]) for c in lines] == [
        ("p0", "written", 1), ("p2", "written", 1), ("p1", "conflict", 1), ("p1", "written", 2)]
    conflict = lines[2]
    assert conflict["updateTime"] is None
    assert conflict["precondition"] == {"updateTime": rfc3339(read["p1"].update_time)}
    for line in (lines[0], lines[1], lines[3]):
        project_id = line["projectId"]
        assert line["document"] == "project"
        assert line["trigger"] == "listener"
        assert "restored_clip" in line["driftKinds"]
        now = projects.projects[project_id]
        assert line["updateTime"] == rfc3339(now.update_time)
        previous = renamed if project_id == "p1" else read[project_id].data
        assert line["precondition"] == {"updateTime": rfc3339(read_again[project_id])}
        assert set(line["fields"]) == {"clipFilenames", "status", "lastReconciliation",
                                       "updatedAt", *(["errorInfo"] if project_id == "p2"
                                                      else [])}
        assert line["fields"]["updatedAt"] == {"serverTime": True}
        rebuilt = loggable(dict(now.data or {}))
        for name, change in line["fields"].items():
            if name in (now.data or {}) and "after" in change:
                assert change["after"] == rebuilt[name], (project_id, name)
            if "before" in change:
                rebuilt[name] = change["before"]
            else:
                rebuilt.pop(name, None)
        assert rebuilt == loggable(dict(previous or {})), project_id


class LostAnswers(MemoryProjects):
    """A server that applies the first single write and loses its answer, as a commit retried
    after a timeout is refused by its own precondition; `then` runs between the two (the app's
    write, if any). A fault the emulator cannot be made to show, hence this double."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.lost = 0
        self.then = then

    def update_project(self, project_id: str, fields: Any, read_update_time: Any) -> Any:
        written = super().update_project(project_id, fields, read_update_time)
        if self.lost == 0:
            self.lost += 1
            if self.then is not None:
                self.then()
            raise Conflict(f"firestore update_project {project_id}: precondition failed")
        return written


def test_a_write_whose_answer_was_lost_is_logged_as_written_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=CHANGES)
    settings = Settings(bucket="reels", root_prefix=ROOT, settle="0s")
    projects, objects = LostAnswers(), MemoryObjects()
    engine = Pipeline(settings, projects, objects, Kept(), clock=lambda: NOW)
    stuck(projects, objects, "p1")
    report = engine.reconcile("p1", Trigger.LISTENER)
    assert projects.lost == 1
    assert report.action is Action.CORRECTED
    assert report.attempts == 1
    assert len(projects.writes) == 1, "the re-read found our write: nothing written again"
    lines = _changes(caplog)
    assert [(c["outcome"], c["attempt"]) for c in lines] == [("written", 1)]
    late = [r for r in caplog.records if r.name == CHANGES]
    assert getattr(late[0], "foundOnReread", None) is True
    assert lines[0]["updateTime"] is None, "the lost answer's update time is not known"


@pytest.mark.parametrize(("app_keeps_our_fields", "outcomes"), [
    (True, [("written", 1)]),
    (False, [("conflict", 1), ("written", 2)]),
])
def test_after_a_lost_answer_the_re_read_decides_between_written_and_conflict(
        caplog: pytest.LogCaptureFixture, app_keeps_our_fields: bool,
        outcomes: list[tuple[str, int]]) -> None:
    """The app writes after our lost answer. A merge keeps our summary: our write landed. A
    whole-document set from its older copy drops it: a conflict, decided again."""
    caplog.set_level(logging.INFO, logger=CHANGES)
    settings = Settings(bucket="reels", root_prefix=ROOT, settle="0s")

    def app_writes() -> None:
        current = dict(projects.projects["p1"].data or {})
        base = current if app_keeps_our_fields else original
        projects.put_project("p1", {**base, "title": "written by the app"})

    projects, objects = LostAnswers(then=app_writes), MemoryObjects()
    engine = Pipeline(settings, projects, objects, Kept(), clock=lambda: NOW)
    stuck(projects, objects, "p1")
    original = dict(projects.projects["p1"].data or {})
    report = engine.reconcile("p1", Trigger.LISTENER)
    assert [(c["outcome"], c["attempt"]) for c in _changes(caplog)] == outcomes
    assert report.action is Action.CORRECTED
    assert report.attempts == outcomes[-1][1]
    assert (projects.projects["p1"].data or {})["title"] == "written by the app"
