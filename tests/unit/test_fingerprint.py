"""Delta rounds (issue #26, item 4): the maths of folder fingerprints and of the rolling full
pass, and delta rounds on the stores in memory."""

from __future__ import annotations

import random
import string
import zlib
from datetime import datetime, timedelta

import pytest

from devkit.memory import EPOCH
from reel_reconciler.engine.batch import BREAKER_HELD, HALTED
from reel_reconciler.engine.reconcile import Pipeline
from reel_reconciler.engine.sweep import sweep
from reel_reconciler.engine.sweep.delta import Schedule, delta_sweep, settled
from reel_reconciler.engine.sweep.fingerprint import (
    DIRTY,
    MAX_ENCODED,
    Fingerprinter,
    Malformed,
    TooMany,
    changed,
    decode,
    due_for_full,
    encode,
    fingerprint,
    folder_of,
    next_due,
)
from reel_reconciler.engine.sweep.ranges import SweepPlan
from reel_reconciler.engine.sweep.result import SweepResult
from reel_reconciler.model import Action, ObjectInfo, Report
from tests.unit.test_range_maths import NOW, ROOT, TRAP_USERS, engine_on, world

R = f"{ROOT}/"


def obj(name: str, generation: int = 1, size: int = 10) -> ObjectInfo:
    return ObjectInfo(f"{R}{name}", size, EPOCH, generation)


def listing(names: list[str]) -> list[ObjectInfo]:
    """Objects in the bucket's (byte) order."""
    return sorted((obj(name) for name in names), key=lambda o: o.name.encode())


NAMES = [f"{user}/p{n}/raw/clip-{k}.mp4" for user in TRAP_USERS for n in range(2)
         for k in range(3)]


# Fingerprints


def test_each_folder_gets_one_fingerprint_whatever_the_pages() -> None:
    objects = listing(NAMES)
    whole = fingerprint(R, objects)
    assert set(whole) == set(TRAP_USERS)
    assert len(set(whole.values())) == len(TRAP_USERS)
    for size in (1, 2, 5, 7):
        prints = Fingerprinter(R)
        pages = [objects[at:at + size] for at in range(0, len(objects), size)]
        assert [o for page in prints.tap(pages) for o in page] == objects
        assert prints.prints == whole, size


@pytest.mark.parametrize("change", ["generation", "size", "added", "deleted", "renamed"])
def test_a_change_to_one_object_changes_its_folder_only(change: str) -> None:
    before = listing(NAMES)
    after = list(before)
    target = next(i for i, o in enumerate(after) if o.name.startswith(f"{R}ab-c/"))
    victim = after[target]
    if change == "generation":
        after[target] = ObjectInfo(victim.name, victim.size, EPOCH, victim.generation + 1)
    elif change == "size":
        after[target] = ObjectInfo(victim.name, victim.size + 1, EPOCH, victim.generation)
    elif change == "added":
        after.insert(target, obj("ab-c/p0/raw/clip-0.0.mp4"))
    elif change == "deleted":
        del after[target]
    else:
        after[target] = ObjectInfo(victim.name + ".2", victim.size, EPOCH, victim.generation)
    assert changed(fingerprint(R, before), fingerprint(R, after)) == {"ab-c"}


def test_appeared_vanished_and_dirty_users_count_as_changed() -> None:
    stored = {"a": b"1" * 8, "b": b"2" * 8, "c": DIRTY}
    current = {"a": b"1" * 8, "c": DIRTY, "d": b"4" * 8}
    assert changed(stored, current) == {"b", "c", "d"}
    assert changed(stored, stored) == {"c"}


def test_names_outside_a_user_folder_are_no_ones() -> None:
    assert folder_of(R, f"{R}ab/x") == "ab"
    assert folder_of(R, f"{R}file-at-the-root") is None
    assert folder_of(R, f"{R}/empty-user") is None
    assert folder_of(R, "elsewhere/ab/x") is None
    assert fingerprint(R, [obj("loose"), obj("ab/x")]).keys() == {"ab"}


def test_a_listing_out_of_order_is_refused() -> None:
    with pytest.raises(ValueError, match="not in name order"):
        fingerprint(R, [obj("a/1"), obj("b/1"), obj("a/2")])


def test_stored_fingerprints_round_trip_and_garbage_is_malformed() -> None:
    prints = fingerprint(R, listing(NAMES)) | {"é-ü": DIRTY, "x" * 1000: b"z" * 8}
    assert decode(encode(prints)) == prints
    assert decode(encode({})) == {}
    packed = encode(prints)
    for bad in (b"not zlib", packed[:-3], encode({"a": b"12345678"})[:0]):
        with pytest.raises(Malformed):
            decode(bad)
    with pytest.raises(Malformed):
        decode(zlib.compress(b"\x00\x05ab"))


def test_a_range_too_big_for_one_document_is_refused() -> None:
    """Firebase uids (28 random characters of [0-9A-Za-z]): about 28,000 fit."""
    rng = random.Random(4)
    alphabet = string.ascii_letters + string.digits
    prints = {"".join(rng.choices(alphabet, k=28)): rng.randbytes(8) for _ in range(40_000)}
    with pytest.raises(TooMany):
        encode(prints)
    fits = dict(list(prints.items())[:20_000])
    assert len(encode(fits)) <= MAX_ENCODED


@pytest.mark.parametrize(("report", "expected"), [
    ({"action": Action.NO_CHANGE}, True),
    ({"action": Action.CORRECTED}, True),
    ({"action": Action.SKIPPED, "reason": "invalid document: no userId"}, True),
    ({"action": Action.SKIPPED, "reason": "a live job owns it"}, True),
    ({"action": Action.SKIPPED, "reason": "written 3s ago", "retry_after": 27.0}, False),
    ({"action": Action.SKIPPED, "held_until": NOW}, False),
    ({"action": Action.SKIPPED, "reason": f"{BREAKER_HELD}: 51 in 10m"}, False),
    ({"action": Action.SKIPPED, "reason": HALTED}, False),
    ({"action": Action.DRIFT}, False),
    ({"action": Action.CONFLICT}, False),
    ({"action": Action.ERROR, "error": "firestore unreachable"}, False),
])
def test_which_reports_leave_the_user_to_its_fingerprint(report: dict[str, object],
                                                         expected: bool) -> None:
    """A user any of whose reports is not settled is read again at the next round."""
    assert settled(Report(project_id="p", **report)) is expected


# The rolling full pass


HOUR = timedelta(hours=1)


def test_ranges_without_fingerprints_are_passed_in_full_at_once() -> None:
    assert due_for_full({"a": None, "b": NOW + HOUR}, NOW, HOUR / 2, 24 * HOUR) == {"a"}
    assert due_for_full({"a": NOW + HOUR}, NOW, HOUR, HOUR) == {"a"}, "fullEvery <= interval"


@pytest.mark.parametrize(("count", "interval", "jitter"), [(64, HOUR / 2, 0.1), (3, HOUR, 0.0),
                                                           (200, HOUR / 4, 0.1)])
def test_every_range_is_passed_in_full_about_once_per_full_every(
        count: int, interval: timedelta, jitter: float) -> None:
    """Three simulated days from nothing stored, rounds jittered as the timer jitters them:
    no range waits longer than fullEvery and half an interval for its full pass, and after
    the first round the full passes are spread over the rounds, not bunched."""
    full_every = 24 * HOUR
    rng = random.Random(count)
    due: dict[int, datetime | None] = dict.fromkeys(range(count))
    last: dict[int, datetime] = {}
    now = NOW
    per_round = []
    while now < NOW + 72 * HOUR:
        full = due_for_full(due, now, interval, full_every)
        for key in full:
            first = key if due[key] is None else None
            due[key] = next_due(now, full_every, first, count)
            if key in last:
                assert now - last[key] <= full_every + interval
            last[key] = now
        per_round.append(len(full))
        now += interval * rng.uniform(1 - jitter, 1 + jitter)
    assert per_round[0] == count
    share = count * interval / full_every
    assert max(per_round[1:]) <= share + 2
    passes = sum(per_round[1:])
    assert 2 * count <= passes <= 3 * count + count // 4 + 3, "about one a day per range"


# Delta rounds on the stores in memory


def _round(engine: Pipeline, plan: SweepPlan, full_every: timedelta = 24 * HOUR,
           now: datetime = NOW) -> SweepResult:
    return delta_sweep(engine, Schedule(now, HOUR / 2, full_every), plan=plan)


def _delta(result: SweepResult) -> dict[str, int]:
    assert result.delta is not None
    return result.delta


def test_a_delta_round_reads_only_the_users_whose_storage_changed() -> None:
    projects, objects = world()
    engine = engine_on(projects, objects)
    plan = SweepPlan(ranges=8, parallel=3)
    first = _round(engine, plan)
    assert _delta(first)["fullRanges"] == 8
    assert sweep(engine, plan=plan).actions[Action.CORRECTED] == 0, "the first round healed"
    quiet = _round(engine, plan, now=NOW + HOUR / 2)
    assert _delta(quiet)["usersRead"] == 0
    assert quiet.actions[Action.CORRECTED] == 0
    victim = next(pid for pid, doc in projects.projects.items()
                  if (doc.data or {}).get("userId") == "ab-c"
                  and (doc.data or {}).get("clipFilenames"))
    gone = projects.projects[victim].data["clipFilenames"][0]  # type: ignore[index]
    del objects.objects[gone]
    before = projects.requests.by_op()
    healed = _round(engine, plan, now=NOW + HOUR)
    reads = projects.requests.by_op() - before
    assert _delta(healed)["usersRead"] == 1
    assert reads["query_user_projects"] == reads["query_user_jobs"] == 1
    assert "stream_projects" not in reads, "no range of this round was due in full"
    assert [r.project_id for r in healed.reports
            if r.action is Action.CORRECTED] == [victim]
    assert gone not in projects.projects[victim].data["clipFilenames"]  # type: ignore[index]


@pytest.mark.parametrize("damage", ["lost", "malformed", "other format"])
def test_a_range_whose_fingerprints_are_unusable_is_passed_in_full(
        damage: str, caplog: pytest.LogCaptureFixture) -> None:
    projects, objects = world()
    engine = engine_on(projects, objects)
    plan = SweepPlan(ranges=4, parallel=2)
    _round(engine, plan)
    key = next(key for key in projects.breakers if "fingerprints" in key)
    if damage == "lost":
        del projects.breakers[key]
    else:
        doc = projects.breakers[key]
        fields = ({"prints": b"garbage"} if damage == "malformed" else {"format": 99})
        projects.breakers[key] = type(doc)(doc.id, {**(doc.data or {}), **fields},
                                           doc.update_time)
    before = projects.requests.by_op()
    again = _round(engine, plan, now=NOW + HOUR / 2)
    reads = projects.requests.by_op() - before
    assert _delta(again)["fullRanges"] == 1
    assert reads["stream_projects"] >= 1
    warned = [r for r in caplog.records if r.getMessage().startswith("fingerprints unusable")]
    assert len(warned) == (0 if damage == "lost" else 1)
    third = _round(engine, plan, now=NOW + HOUR)
    assert _delta(third)["fullRanges"] == 0, "the full pass wrote good ones"


def test_drift_only_observed_is_reported_again_at_every_round() -> None:
    """Observe writes nothing: a user whose drift was only reported is read at the next round
    too, storage unchanged, so that the drift stays visible."""
    projects, objects = world()
    engine = engine_on(projects, objects)
    plan = SweepPlan(ranges=4, parallel=2)
    schedule = Schedule(NOW, HOUR / 2, 24 * HOUR)
    first = delta_sweep(engine, schedule, dry_run=True, plan=plan)
    assert first.actions[Action.DRIFT] > 0
    later = Schedule(NOW + HOUR / 2, HOUR / 2, 24 * HOUR)
    second = delta_sweep(engine, later, dry_run=True, plan=plan)
    assert second.delta is not None
    assert second.delta["fullRanges"] == 0
    assert {r.project_id for r in second.reports if r.action is Action.DRIFT} == {
        r.project_id for r in first.reports if r.action is Action.DRIFT}


def test_a_user_left_unsettled_is_read_again_even_when_its_folder_is_gone() -> None:
    """Every object of a `ready` project deleted, and the correction loses a race with
    another writer: the next round reads the user again, though it has no folder now."""
    projects, objects = world()
    engine = engine_on(projects, objects, max_attempts=1)
    plan = SweepPlan(ranges=4, parallel=2)
    _round(engine, plan)
    user = "ab0"
    for name in [name for name in objects.objects if name.startswith(f"{ROOT}/{user}/")]:
        del objects.objects[name]
    lost = {"race": True}

    def another_writer() -> None:
        if lost.pop("race", False):
            for project_id, doc in list(projects.projects.items()):
                if (doc.data or {}).get("userId") == user:
                    projects.put_project(project_id, dict(doc.data or {}))

    projects.before_commit = another_writer
    raced = _round(engine, plan, now=NOW + HOUR / 2)
    assert raced.actions[Action.CONFLICT] >= 1
    healed = _round(engine, plan, now=NOW + HOUR)
    assert _delta(healed)["usersRead"] == 1
    assert healed.actions[Action.CORRECTED] >= 1


def test_an_outage_ends_the_round_and_keeps_the_stored_fingerprints() -> None:
    """GCS unreachable: the round stops early and writes no fingerprint, so the change it
    could not finish looking at is still a change at the next round."""
    projects, objects = world()
    engine = engine_on(projects, objects)
    plan = SweepPlan(ranges=4, parallel=2)
    _round(engine, plan)
    stored = {key: doc.update_time for key, doc in projects.breakers.items()
              if "fingerprints" in key}
    victim = next(name for name in objects.objects if name.startswith(f"{ROOT}/ab-c/"))
    del objects.objects[victim]
    objects.down = True
    broken = _round(engine, plan, now=NOW + HOUR / 2)
    assert broken.aborted is not None
    assert {key: projects.breakers[key].update_time for key in stored} == stored
    objects.down = False
    after = _round(engine, plan, now=NOW + HOUR)
    assert after.aborted is None
    assert _delta(after)["usersRead"] == 1
