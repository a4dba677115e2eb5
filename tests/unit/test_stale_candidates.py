"""The stale-job cleanup's candidates from the jobs listener's view, the fallback to a query
without one, and the timer's safety net, on the stores in memory. The view path against the
emulator with the listeners running: tests/integration/test_stale_view.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from devkit.memory import EPOCH, MemoryObjects, StreamingProjects
from reel_reconciler.config import Settings
from reel_reconciler.engine.reconcile import Engine, Pipeline
from reel_reconciler.engine.recorder import Recorder
from reel_reconciler.engine.stale import ActiveJobs, StaleTimer, candidates, cleanup_stale_jobs
from reel_reconciler.stores.feedstate import Seen
from tests.support.recording import TESTS

NOW = EPOCH + timedelta(days=1)
TIMEOUT = timedelta(minutes=30)
FRESH = NOW - timedelta(minutes=5)
SILENT = NOW - timedelta(hours=2)


def seen(data: dict[str, Any], at: datetime = SILENT) -> Seen:
    return Seen((int(at.timestamp()), 0), data, at)


def job(status: str = "processing", **stamps: Any) -> dict[str, Any]:
    return {"projectId": "p1", "status": status, **stamps}


def test_only_jobs_silent_past_the_timeout_are_candidates() -> None:
    view = {"fresh": seen(job(updatedAt=FRESH)),
            "silent": seen(job(updatedAt=SILENT)),
            "queued-long-ago": seen(job("queued", createdAt=SILENT)),
            "started-recently": seen(job(createdAt=SILENT, startedAt=FRESH)),
            "updated-recently": seen(job(createdAt=SILENT, startedAt=SILENT, updatedAt=FRESH))}
    assert candidates(view, NOW, TIMEOUT) == ["queued-long-ago", "silent"]


def test_the_timeout_itself_is_not_past_it() -> None:
    view = {"edge": seen(job(updatedAt=NOW - TIMEOUT)),
            "past": seen(job(updatedAt=NOW - TIMEOUT - timedelta(microseconds=1)))}
    assert candidates(view, NOW, TIMEOUT) == ["past"]


def test_a_job_the_view_cannot_judge_is_a_candidate_not_dropped() -> None:
    """No sign of life, a timestamp of the wrong type, no projectId: read and judged."""
    view = {"no-stamps": seen(job()),
            "string-stamp": seen(job(updatedAt="yesterday")),
            "no-project": seen({"status": "processing", "updatedAt": FRESH}),
            "fresh": seen(job(updatedAt=FRESH))}
    assert candidates(view, NOW, TIMEOUT) == ["no-project", "no-stamps", "string-stamp"]


def test_an_empty_view_has_no_candidates() -> None:
    assert candidates({}, NOW, TIMEOUT) == []


class Store:
    """Jobs in memory: one fresh, one silent, one the view has not seen yet."""

    def __init__(self) -> None:
        self.firestore = StreamingProjects()
        self.firestore.put_project("p1", {"userId": "u", "status": "generating",
                                          "promptList": ["a"], "clipFilenames": []})
        for job_id, sign in (("fresh", FRESH), ("silent", SILENT), ("unseen", SILENT)):
            self.firestore.put_job(job_id, job(createdAt=sign, updatedAt=sign))
        settings = Settings(bucket="reels", settle="0s", stale_timeout="30m")
        # The memory store answers the cleanup's queries, gets and writes as Firestore does.
        self.engine = cast(Engine, Pipeline(settings, self.firestore, MemoryObjects(),
                                            Recorder(TESTS), clock=lambda: NOW))

    def view(self, *job_ids: str) -> ActiveJobs:
        """What the listener would hold of `job_ids`, as the store has them now."""
        docs = self.firestore.jobs
        return {i: seen(dict(docs[i].data or {}), docs[i].update_time) for i in job_ids}

    def status(self, job_id: str) -> object:
        return (self.firestore.jobs[job_id].data or {}).get("status")


def test_with_a_view_only_its_candidates_are_read_and_failed() -> None:
    store = Store()
    ops = store.firestore.requests.by_op()
    result = cleanup_stale_jobs(store.engine, view=store.view("fresh", "silent"))
    assert result.stale_jobs == ["silent"]
    assert result.candidates == 1
    assert store.status("silent") == "failed"
    assert store.status("unseen") == "processing", "not in the view: left to the safety net"
    after = store.firestore.requests.by_op()
    assert after["query_active_jobs"] == ops["query_active_jobs"]
    assert after["get_jobs"] == ops["get_jobs"] + 1


def test_a_candidate_refreshed_since_the_view_is_judged_on_what_was_read() -> None:
    store = Store()
    view = store.view("silent")
    store.firestore.put_job("silent", job(createdAt=SILENT, updatedAt=FRESH))
    result = cleanup_stale_jobs(store.engine, view=view)
    assert result.candidates == 1
    assert result.stale_jobs == []
    assert store.status("silent") == "processing"


def test_a_candidate_gone_since_the_view_is_left_alone() -> None:
    store = Store()
    view = store.view("silent")
    del store.firestore.jobs["silent"]
    assert cleanup_stale_jobs(store.engine, view=view).stale_jobs == []


def test_without_a_view_every_active_job_is_queried() -> None:
    store = Store()
    ops = store.firestore.requests.by_op()
    result = cleanup_stale_jobs(store.engine)
    assert sorted(result.stale_jobs) == ["silent", "unseen"]
    assert result.candidates is None
    after = store.firestore.requests.by_op()
    assert after["query_active_jobs"] == ops["query_active_jobs"] + 1
    assert after["get_jobs"] == ops["get_jobs"]


class Clock:
    """Monotonic seconds that move only when a test says."""

    def __init__(self) -> None:
        self.seconds = [1000.0]

    def __call__(self) -> float:
        return self.seconds[-1]

    def advance(self, by: timedelta) -> None:
        self.seconds.append(self() + by.total_seconds())


def test_the_timer_queries_first_then_uses_the_view_then_queries_again_when_due() -> None:
    store, clock = Store(), Clock()
    timer = StaleTimer(timedelta(hours=6), clock)
    views: list[str] = []

    def view() -> ActiveJobs:
        views.append("asked")
        return store.view("fresh")

    assert timer.run(store.engine, True, view).candidates is None, "the first run queries"
    assert views == []
    clock.advance(timedelta(minutes=5))
    assert timer.run(store.engine, True, view).candidates == 0
    assert views == ["asked"]
    clock.advance(timedelta(hours=6))
    assert timer.run(store.engine, True, view).candidates is None, "the safety net"
    clock.advance(timedelta(minutes=5))
    assert timer.run(store.engine, True, view).candidates == 0


def test_the_timer_queries_while_the_listener_has_no_view() -> None:
    store, clock = Store(), Clock()
    timer = StaleTimer(timedelta(hours=6), clock)
    timer.run(store.engine, True, lambda: None)
    clock.advance(timedelta(minutes=5))
    result = timer.run(store.engine, True, lambda: None)
    assert result.candidates is None
    assert sorted(result.stale_jobs) == ["silent", "unseen"]


def test_a_query_that_failed_is_due_again() -> None:
    store, clock = Store(), Clock()
    timer = StaleTimer(timedelta(hours=6), clock)
    store.firestore.down = True
    assert timer.run(store.engine, True, lambda: {}).error is not None
    store.firestore.down = False
    clock.advance(timedelta(minutes=5))
    assert timer.due()
    assert timer.run(store.engine, True, lambda: {}).candidates is None
    assert not timer.due()
