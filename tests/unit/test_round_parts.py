"""Distributed rounds as delta rounds (issue #26, items 3 and 4): the coordinator chooses each
range's pass by the local schedule, a worker's range runs the local delta code on the stores in
memory and keeps the same fingerprints, a range swept twice keeps them whole, and a forced
round's ranges send back projects per user from which the coordinator cuts as one sweep does."""

from __future__ import annotations

import json
import logging
import random
import string
import threading
import zlib
from datetime import timedelta
from typing import Any

import pytest

from devkit.memory import StreamingObjects, StreamingProjects
from reel_reconciler.engine.sweep import SweepResult, sweep
from reel_reconciler.engine.sweep.delta import (
    RangePart,
    Schedule,
    delta_sweep,
    fingerprint_store,
    full_ranges,
    round_passes,
)
from reel_reconciler.engine.sweep.ranges import (
    PROFILE_BYTES,
    KeyRange,
    SweepPlan,
    WorkProfile,
    merged_splits,
    ranges_from_splits,
)
from reel_reconciler.engine.sweep.stored_prints import Stored
from reel_reconciler.engine.sweep.work import RangeResult, WorkItem, spec_snapshot
from reel_reconciler.model import Action, ReconcilerId
from reel_reconciler.runtime.rounds import round_splits
from reel_reconciler.spec import ReconcilerSpec
from tests.support.patience import wait_for
from tests.unit.test_range_maths import NOW, _project, engine_on, world

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SPEC = ReconcilerSpec.parse({"firestore": {"project": "p", "database": "db"},
                             "storage": {"bucket": "clips"}})
WHO = ReconcilerId("reels", "prod")


def _item(key_range: KeyRange, index: int = 0, count: int = 4,
          schedule: Schedule | None = None, full: bool = True) -> WorkItem:
    return WorkItem(WHO, 1, spec_snapshot(SPEC), "r1", index, count, key_range, schedule, full)


# The work item's pass


def test_a_work_item_carries_its_pass_and_schedule_through_the_topic() -> None:
    schedule = Schedule(NOW, HOUR / 2, DAY)
    delta = _item(KeyRange("A", "b"), 1, 4, schedule, full=False)
    assert WorkItem.parse(delta.body()) == delta
    due = _item(KeyRange("A", "b"), 1, 4, schedule, full=True)
    assert WorkItem.parse(due.body()) == due
    forced = _item(KeyRange("A", "b"))
    assert WorkItem.parse(forced.body()) == forced
    assert WorkItem.parse(forced.body()).schedule is None


def test_an_item_of_an_earlier_version_is_a_full_pass() -> None:
    """Messages of an earlier version carry neither field: swept in full, as they were."""
    body = json.loads(_item(KeyRange("A", "b")).body())
    del body["pass"]
    parsed = WorkItem.parse(json.dumps(body).encode())
    assert (parsed.full, parsed.schedule) == (True, None)


@pytest.mark.parametrize(("change", "problem"), [
    ({"pass": "half"}, "pass 'half' is not 'full' or 'delta'"),
    ({"pass": "delta"}, "a delta pass needs its round's schedule"),
    ({"schedule": {"now": "yesterday", "interval": 60, "fullEvery": 600}}, "schedule:"),
    ({"schedule": {"now": "2026-01-01T00:00:00", "interval": 60, "fullEvery": 600}},
     "schedule: now has no time zone"),
    ({"schedule": {"now": "2026-01-01T00:00:00+00:00", "interval": 0, "fullEvery": 600}},
     "schedule: interval 0 is not a positive number of seconds"),
    ({"schedule": {"now": "2026-01-01T00:00:00+00:00", "interval": 60, "fullEvery": 1e300}},
     "schedule: fullEvery 1e+300 is not a positive number of seconds"),
    ({"schedule": []}, "schedule is not an object"),
])
def test_a_bad_pass_or_schedule_is_refused_in_one_line(change: dict[str, Any],
                                                       problem: str) -> None:
    body = {**json.loads(_item(KeyRange("A", "b")).body()), **change}
    with pytest.raises(ValueError, match=r"^[^\n]*$") as caught:
        WorkItem.parse(json.dumps(body).encode())
    assert problem in str(caught.value)


def test_the_coordinator_chooses_full_passes_by_the_local_schedule() -> None:
    """Due before the round after this one is halfway there, or without fingerprints: full;
    every range every round when fullEvery is no longer than the interval."""
    prints = {"u": b"\1" * 8}
    ranges = ranges_from_splits(["F", "V", "k"])
    stored = {
        ranges[0]: Stored(NOW, prints, NOW - DAY, NOW - HOUR),  # overdue
        ranges[1]: Stored(NOW, prints, NOW, NOW + HOUR / 8),  # due within half an interval
        ranges[2]: Stored(NOW, prints, NOW, NOW + HOUR),  # not yet
        ranges[3]: Stored(NOW, None, NOW, None, "malformed"),
    }
    assert full_ranges(stored, Schedule(NOW, HOUR / 2, DAY)) == {ranges[0], ranges[1],
                                                                  ranges[3]}
    assert full_ranges(stored, Schedule(NOW, HOUR, HOUR)) == set(ranges)


# A worker's range on the stores in memory


def _worker_round(engine: Any, plan: SweepPlan, schedule: Schedule) -> list[SweepResult]:
    """A round as a coordinator and its workers run it: passes chosen, each range alone."""
    ranges = plan.key_ranges()
    full = round_passes(engine, schedule, ranges)
    return [delta_sweep(engine, schedule, plan=SweepPlan.of_share([key_range]),
                        part=RangePart(index, len(ranges), full[index]))
            for index, key_range in enumerate(ranges)]


def _added(results: list[SweepResult], key: str) -> int:
    return sum((result.delta or {})[key] for result in results)


def test_workers_keep_the_fingerprints_of_local_rounds_and_the_reverse() -> None:
    """Distribution switched on after a local round, then off again: no range passed in full
    for want of fingerprints, a storage change read for its user alone, as locally."""
    projects, objects = world()
    engine = engine_on(projects, objects)
    plan = SweepPlan(ranges=4, parallel=2)
    first = delta_sweep(engine, Schedule(NOW, HOUR / 2, DAY), plan=plan)
    assert first.delta is not None
    assert first.delta["fullRanges"] == 4
    quiet = _worker_round(engine, plan, Schedule(NOW + HOUR / 2, HOUR / 2, DAY))
    assert (_added(quiet, "fullRanges"), _added(quiet, "usersRead")) == (0, 0)
    victim = next(pid for pid, doc in projects.projects.items()
                  if (doc.data or {}).get("userId") == "ab.c"
                  and (doc.data or {}).get("clipFilenames"))
    del objects.objects[projects.projects[victim].data["clipFilenames"][0]]  # type: ignore[index]
    healed = _worker_round(engine, plan, Schedule(NOW + HOUR, HOUR / 2, DAY))
    assert (_added(healed, "fullRanges"), _added(healed, "usersRead")) == (0, 1)
    assert sum(r.actions[Action.CORRECTED] for r in healed) == 1
    back = delta_sweep(engine, Schedule(NOW + 3 * HOUR / 2, HOUR / 2, DAY), plan=plan)
    assert back.delta is not None
    assert (back.delta["fullRanges"], back.delta["usersRead"]) == (0, 0)


def test_a_worker_places_its_first_full_pass_as_a_local_round_would() -> None:
    """Ranges passed in full for want of fingerprints fall due one after another, by their
    place in the round: the same due times whether local or spread over workers."""
    due: dict[str, list[Any]] = {}
    for how in ("local", "workers"):
        projects, objects = world()
        engine = engine_on(projects, objects)
        plan = SweepPlan(ranges=4, parallel=2)
        schedule = Schedule(NOW, HOUR / 2, DAY)
        if how == "local":
            delta_sweep(engine, schedule, plan=plan)
        else:
            _worker_round(engine, plan, schedule)
        due[how] = sorted((doc.data or {})["dueAt"] for key, doc in projects.breakers.items()
                          if "fingerprints" in key)
    assert due["local"] == due["workers"]
    assert len(set(due["local"])) == 4


def test_a_lost_fingerprint_document_gives_a_workers_range_a_full_pass() -> None:
    """Lost between the coordinator's choice and the worker's load: the worker passes the
    range in full all the same."""
    projects, objects = world()
    engine = engine_on(projects, objects)
    plan = SweepPlan(ranges=4, parallel=2)
    _worker_round(engine, plan, Schedule(NOW, HOUR / 2, DAY))
    key_range = plan.key_ranges()[2]
    schedule = Schedule(NOW + HOUR / 2, HOUR / 2, DAY)
    assert round_passes(engine, schedule, [key_range]) == [False]
    for key in [key for key in projects.breakers if key.endswith(f"~{key_range.lo}~"
                                                                 f"{key_range.hi or ''}")]:
        del projects.breakers[key]
    result = delta_sweep(engine, schedule, plan=SweepPlan.of_share([key_range]),
                         part=RangePart(2, 4, full=False))
    assert result.delta is not None
    assert result.delta["fullRanges"] == 1
    assert result.scanned > 0


def test_the_coordinator_reads_schedules_not_fingerprints() -> None:
    """The coordinator asks each range's document for its schedule alone (a document can near
    a megabyte of fingerprints); a range whose fingerprints no longer decode is chosen for a
    delta pass by that schedule, and its worker then passes it in full."""
    projects, objects = world()
    engine = engine_on(projects, objects)
    plan = SweepPlan(ranges=4, parallel=2)
    _worker_round(engine, plan, Schedule(NOW, HOUR / 2, DAY))
    ranges = plan.key_ranges()
    store = fingerprint_store(engine)
    asked: list[Any] = []
    own_document = projects.own_document

    def recorded(collection: str, name: str, op: str, fields: Any = None) -> Any:
        found = own_document(collection, name, op, fields)
        asked.append((op, fields, sorted((found.data or {}) if found else {})))
        return found

    projects.own_document = recorded  # type: ignore[method-assign]
    schedule = Schedule(NOW + HOUR / 2, HOUR / 2, DAY)
    assert round_passes(engine, schedule, ranges) == [False] * 4
    assert {op for op, _, _ in asked} == {"get_fingerprint_due"}
    assert all("prints" not in got and "dueAt" in got for _, _, got in asked), asked
    key = f"{engine.settings.fingerprint_collection}/{store.name(ranges[1])}"
    doc = projects.breakers[key]
    projects.breakers[key] = type(doc)(doc.id, {**(doc.data or {}), "prints": b"garbage"},
                                       doc.update_time)
    assert round_passes(engine, schedule, [ranges[1]]) == [False]
    result = delta_sweep(engine, schedule, plan=SweepPlan.of_share([ranges[1]]),
                         part=RangePart(1, 4, full=False))
    assert result.delta is not None
    assert result.delta["fullRanges"] == 1, "the worker found them unusable"
    overflowing = {**(projects.breakers[key].data or {}), "overflow": True}
    projects.breakers[key] = type(doc)(doc.id, overflowing, projects.breakers[key].update_time)
    assert round_passes(engine, schedule, [ranges[1]]) == [True]


def test_a_range_swept_twice_keeps_whole_fingerprints_and_both_results(
        caplog: pytest.LogCaptureFixture) -> None:
    """A redelivered range swept by two workers at once: the one that saves second is
    refused by the precondition, warns, and still returns its result to report; the next
    round finds the winner's fingerprints intact."""
    projects, objects = world()
    engine = engine_on(projects, objects)
    plan = SweepPlan(ranges=1)
    _worker_round(engine, plan, Schedule(NOW, HOUR / 2, DAY))
    slow_objects = StreamingObjects(latency=lambda _: 0.05, page_size=7)
    slow_objects.objects = objects.objects
    slow = engine_on(projects, slow_objects)
    schedule = Schedule(NOW + HOUR / 2, HOUR / 2, DAY)
    part = RangePart(0, 1, full=False)
    loads = projects.requests.by_op()["get_fingerprints"]
    loser: list[SweepResult] = []
    thread = threading.Thread(target=lambda: loser.append(delta_sweep(
        slow, schedule, plan=SweepPlan.of_share([KeyRange()]), part=part)))
    thread.start()
    wait_for(lambda: projects.requests.by_op()["get_fingerprints"] > loads, 10,
             "the slow worker to load the fingerprints")
    winner = delta_sweep(engine, schedule, plan=SweepPlan.of_share([KeyRange()]), part=part)
    thread.join(30)
    assert loser, "the slow worker finished"
    assert (winner.aborted, loser[0].aborted) == (None, None), "both have a result to report"
    assert (loser[0].delta or {}).get("ranges") == 1
    assert "fingerprints not saved" in caplog.text
    caplog.clear()
    later = _worker_round(engine, plan, Schedule(NOW + HOUR, HOUR / 2, DAY))
    assert (_added(later, "fullRanges"), _added(later, "usersRead")) == (0, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# Split points from the ranges' projects per user


def test_a_forced_round_over_workers_cuts_where_one_sweep_cuts() -> None:
    """Skewed userIds (all alike, one heavy user): each range swept alone, its result through
    its document's fields, gives the coordinator the split points of one ranged sweep."""
    projects, objects = StreamingProjects(), StreamingObjects()
    for i in range(300):
        for p in range(1 + i % 4):
            _project(projects, objects, f"user{i:04d}", f"p{i:04d}-{p}", 0)
    for p in range(400):
        _project(projects, objects, "user0100", f"heavy-{p:03d}", 0)
    engine = engine_on(projects, objects, page_size=100)
    plan = SweepPlan(ranges=8, parallel=4)
    local = sweep(engine, dry_run=True, plan=plan)
    assert len(local.splits) >= 5
    outcomes = []
    for index, key_range in enumerate(plan.key_ranges()):
        share = sweep(engine, dry_run=True, plan=SweepPlan.of_share([key_range]))
        assert share.profile is not None
        fields = RangeResult.from_sweep(index, share, "w").fields(_item(key_range, index, 8))
        outcomes.append(RangeResult.from_fields(fields))
    assert round_splits(outcomes, 8) == local.splits
    assert round_splits([*outcomes[:-1], RangeResult.from_sweep(7, SweepResult(), "old")],
                        8) == [], "a range without counts: no new cut"


def test_a_range_result_comes_back_with_its_delta_counts_and_profile() -> None:
    one = SweepResult(scanned=3, delta={"ranges": 1, "fullRanges": 0, "usersRead": 2,
                                        "indexed": 0}, documents_read=9)
    one.actions.update({Action.CORRECTED: 1, Action.NO_CHANGE: 2})
    one.profile = WorkProfile()
    for user, projects in (("a", 2), ("b", 1)):
        one.profile.add(user, projects)
    sent = RangeResult.from_sweep(1, one, "w1")
    back = RangeResult.from_fields(sent.fields(_item(KeyRange("A", "b"), 1)))
    assert back == sent
    total = SweepResult(delta={"ranges": 0, "fullRanges": 0, "usersRead": 0, "indexed": 0})
    back.add_to(total)
    back.add_to(total)
    assert total.delta == {"ranges": 2, "fullRanges": 0, "usersRead": 4, "indexed": 0}
    assert total.documents_read == 18, "the round's cost adds up its workers'"
    assert not total.complete
    with pytest.raises(ValueError, match="work profile unreadable"):
        RangeResult.from_fields({**sent.fields(_item(KeyRange("A", "b"), 1)),
                                 "profile": b"junk"})


def test_a_range_of_100k_users_sends_a_bounded_profile_that_cuts_alike() -> None:
    rng = random.Random(26)
    alphabet = string.ascii_letters + string.digits
    users = sorted({"".join(rng.choice(alphabet) for _ in range(28)) for _ in range(100_000)})
    profile = WorkProfile()
    for user in users:
        profile.add(user, rng.choice([1, 2, 3, 8]))
    packed = profile.encode()
    print(f"\n{len(users):,} users: {len(profile.buckets)} buckets, {len(packed):,} bytes")
    assert len(packed) <= PROFILE_BYTES
    assert WorkProfile.decode(packed) == profile
    assert merged_splits([WorkProfile.decode(packed)], 64) == merged_splits([profile], 64)
    small = WorkProfile.decode(profile.encode(max_bytes=20_000))
    assert len(profile.encode(max_bytes=20_000)) <= 20_000
    assert len(small.buckets) < len(profile.buckets), "coarser to fit"
    assert small.total == profile.total, "every project still counted"
    assert WorkProfile.decode(packed) == profile, "the profile itself is left alone"


def test_a_malformed_profile_is_refused_in_one_line() -> None:
    for rows, problem in ((["x"], "is not [first, last, projects]"),
                          ([["b", "c", 1], ["a", "a", 1]], "not in userId order"),
                          ({"a": 1}, "not a list of buckets")):
        with pytest.raises(ValueError, match=r"^[^\n]*$") as caught:
            WorkProfile.decode(zlib.compress(json.dumps(rows).encode()))
        assert problem in str(caught.value)
