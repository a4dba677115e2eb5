"""Key ranges (issue #26): the maths of split points, and ranged sweeps on the stores in
memory that scan every project exactly once, with the same reports as one unranged sweep,
for several range counts and parallelisms, whatever the userIds."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from devkit.memory import EPOCH, StreamingObjects, StreamingProjects
from reel_reconciler.config import ConfigError, Settings
from reel_reconciler.engine.reconcile import HALTED, Pipeline
from reel_reconciler.engine.recorder import Recorder
from reel_reconciler.engine.sweep import sweep
from reel_reconciler.engine.sweep.ranges import (
    ALPHABET,
    KeyRange,
    SweepPlan,
    WorkProfile,
    even_splits,
    plan_ranges,
    ranges_from_splits,
    split_between,
    weighted_splits,
)
from reel_reconciler.model import Action, Report
from reel_reconciler.operator.status import kept_splits, sweep_summary
from reel_reconciler.spec import ReconcilerSpec
from tests.support.recording import TESTS
from tests.support.sweeping import swept_once

NOW = EPOCH + timedelta(days=1)
ROOT = "reel-maker"
TRAP_USERS = ["0", "A", "AB", "Zz", "a", "ab", "ab-c", "ab-c-d", "ab.c", "ab0", "ab_c", "abc",
              "b", "m", "m0", "n", "é", "ü-x", "z", "z-last", "zz", "~tilde", "日本"]
"""Each a prefix of the next, or continuing it with a byte below or above "/", upper and
lower case, non-ASCII, and users equal to split points (`m`, `b`, `n`: see SPLITS)."""
SPLITS = [["b"], ["ab0", "m", "n"], ["AB", "ab", "abc", "m0", "z"], even_splits(64)]


def test_split_between_keeps_both_orders_on_one_side() -> None:
    assert split_between("ab", "ab-c") is None, "no split point between ab and ab-c"
    assert split_between("ab-c", "ab.c") is None
    assert split_between("a-z", "a.b") is None
    assert split_between("ab", "ac") == "ac"
    assert split_between("a", "a_") == "aZ"
    assert split_between("ab.c", "ab0") == "ab0"
    assert split_between("z", "é") == "z0"
    assert split_between("zz~", "é") is None, "nothing of the alphabet sorts above zz~ in z"
    assert split_between("zz", "zz~") == "zzz"
    assert split_between("b", "a") is None
    assert split_between("b", "b") is None


def test_even_splits_are_sorted_distinct_and_made_of_the_alphabet() -> None:
    for count in (1, 2, 3, 7, 64, 1000, 4096):
        points = even_splits(count)
        assert len(points) == count - 1
        assert points == sorted(set(points))
        assert all(set(point) <= set(ALPHABET) for point in points)
    with pytest.raises(ValueError, match="between 1 and"):
        even_splits(0)


def test_a_bound_outside_the_alphabet_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0-9A-Za-z\]"):
        KeyRange("ab-", None)
    with pytest.raises(ValueError, match="empty range"):
        KeyRange("b", "a")
    with pytest.raises(ValueError, match="ascending"):
        ranges_from_splits(["b", "a"])
    with pytest.raises(ValueError, match="parallel"):
        SweepPlan(ranges=4, parallel=0)


def test_a_range_travels_as_a_plain_value() -> None:
    for key_range in plan_ranges(5):
        assert KeyRange.from_json(key_range.as_json()) == key_range


@pytest.mark.parametrize("splits", SPLITS)
def test_firestore_and_gcs_put_every_user_in_the_same_range(splits: list[str]) -> None:
    """A user's userId in [lo, hi) exactly when its folder `root/u/...` lists between the
    offsets `root/lo` and `root/hi`, in byte order; and in exactly one range."""
    rng = random.Random(26)
    users = TRAP_USERS + [f"{rng.choice(TRAP_USERS)}{rng.choice('-._0Aa/é')}{i}"
                          for i in range(300)]
    ranges = ranges_from_splits(splits)
    for user in users:
        if "/" in user:
            continue
        name = f"{ROOT}/{user}/p/raw/clip.mp4".encode()
        by_firestore = [r for r in ranges if r.holds(user)]
        by_gcs = [r for r in ranges if f"{ROOT}/{r.lo}".encode() <= name and (
            r.hi is None or name < f"{ROOT}/{r.hi}".encode())]
        assert len(by_firestore) == 1, user
        assert by_firestore == by_gcs, user


def test_weighted_splits_give_ranges_similar_work() -> None:
    """Users with skewed project counts (one with thousands): the split points follow the
    counts, never cut a user, and a range holds about its share."""
    rng = random.Random(7)
    counts = {f"u{rng.getrandbits(40):010x}": rng.choice([1, 2, 3, 5, 40]) for _ in range(3000)}
    counts["u8heavy"] = 5000
    profile = WorkProfile(limit=256)
    for user in sorted(counts):
        profile.add(user, counts[user])
    points = weighted_splits(profile, 16)
    assert 10 <= len(points) <= 15
    assert points == sorted(set(points))
    ranges = ranges_from_splits(points)
    work = [sum(n for user, n in counts.items() if r.holds(user)) for r in ranges]
    share = sum(counts.values()) / 16
    heavy = next(i for i, r in enumerate(ranges) if r.holds("u8heavy"))
    assert all(n <= 2.5 * share for i, n in enumerate(work) if i != heavy), work
    assert len(profile.buckets) <= 256, "memory stays bounded"
    assert plan_ranges(16, points) == ranges
    assert len(plan_ranges(16, ["not/a point"])) == 16, "unusable splits: an even cut"


# Ranged sweeps on the stores in memory


def _project(projects: StreamingProjects, objects: StreamingObjects, user: object,
             project_id: str, kind: int) -> None:
    """Healthy, stuck generating with its clips in the bucket only, or ready with a clip
    gone."""
    clips = [f"{ROOT}/{user}/{project_id}/raw/job-{project_id}/prompt-{i:02d}/clip.mp4"
             for i in range(2)]
    status = ("ready", "generating", "ready")[kind]
    claimed = [] if kind == 1 else clips
    projects.put_project(project_id, {
        "userId": user, "title": "t", "status": status, "durationSeconds": 8,
        "promptList": ["a", "b"], "clipFilenames": claimed})
    projects.put_job(f"job-{project_id}", {
        "projectId": project_id, "userId": user, "status": "failed" if kind == 1 else
        "completed", "promptCount": 2, "createdAt": EPOCH, "updatedAt": EPOCH})
    for name in clips[:1] if kind == 2 else clips:
        objects.put(name)


def world(heavy: int = 0) -> tuple[StreamingProjects, StreamingObjects]:
    projects, objects = StreamingProjects(), StreamingObjects(page_size=7)
    n = 0
    for user in TRAP_USERS:
        for suffix in ("", "-1", ".1", "0"):
            _project(projects, objects, user, f"q{n:03d}{suffix}", n % 3)
            n += 1
    for i in range(heavy):
        _project(projects, objects, "m", f"h{i:05d}", i % 3)
    for odd in (7, None, "ab/c", ""):
        _project(projects, objects, odd, f"odd-{odd!r}", 0)
    projects.put_project("no-user", {"status": "ready", "promptList": []})
    for user in ("0-orphan", "ab-b", "zz-orphan"):
        objects.put(f"{ROOT}/{user}/gone/raw/clip.mp4")
    return projects, objects


def engine_on(projects: StreamingProjects, objects: StreamingObjects,
              **overrides: Any) -> Pipeline:
    settings = Settings(bucket="reels", root_prefix=ROOT, settle="0s",
                        **{"page_size": 5, **overrides})
    return Pipeline(settings, projects, objects, Recorder(TESTS), clock=lambda: NOW)


def reports_of(engine: Pipeline, plan: SweepPlan) -> tuple[dict[str, dict[str, Any]], Any]:
    seen, result = swept_once(engine, plan)
    return {report.project_id: report.as_json() for report in seen}, result


@pytest.mark.parametrize("ranges", [2, 3, 8, 64])
@pytest.mark.parametrize("parallel", [1, 3, 8])
def test_every_project_is_scanned_once_with_the_unranged_reports(ranges: int,
                                                                  parallel: int) -> None:
    projects, objects = world(heavy=1500 if (ranges, parallel) == (8, 3) else 0)
    engine = engine_on(projects, objects)
    unranged, whole = reports_of(engine, SweepPlan())
    assert set(unranged) == set(projects.projects)
    assert not whole.ranges
    ranged, result = reports_of(engine, SweepPlan(ranges=ranges, parallel=parallel))
    assert ranged == unranged
    assert result.scanned == whole.scanned == len(projects.projects)
    assert result.actions == whole.actions
    assert result.aborted is None
    assert len(result.ranges) == ranges
    assert sum(summary.scanned for summary in result.ranges) <= result.scanned
    assert result.splits == sorted(set(result.splits))


def test_the_next_sweep_cuts_where_the_last_one_counted() -> None:
    """userIds that all start alike fall in one range of an even cut; the split points the
    sweep counted spread them, and the next sweep still scans each project once."""
    projects, objects = StreamingProjects(), StreamingObjects()
    for i in range(400):
        for p in range(3):
            _project(projects, objects, f"user{i:04d}", f"p{i:04d}-{p}", 0)
    engine = engine_on(projects, objects, page_size=100)
    first = sweep(engine, dry_run=True, plan=SweepPlan(ranges=8, parallel=4))
    assert max(summary.scanned for summary in first.ranges) == 1200
    assert len(first.splits) == 7
    _, second = reports_of(engine, SweepPlan(ranges=8, parallel=4,
                                             splits=tuple(first.splits)))
    assert second.scanned == 1200
    assert max(summary.scanned for summary in second.ranges) <= 2 * 1200 / 8


def test_a_restarted_operator_cuts_where_its_status_says() -> None:
    """The split points go to status with the range count they were made for, and come back
    from it only for that count and only when well formed."""
    projects, objects = StreamingProjects(), StreamingObjects()
    for i in range(200):
        _project(projects, objects, f"user{i:04d}", f"p{i:04d}", 0)
    engine = engine_on(projects, objects, page_size=50)
    first = sweep(engine, dry_run=True, plan=SweepPlan(ranges=4, parallel=2))
    body = {"status": {"lastSweep": sweep_summary(first)}}
    kept = kept_splits(body)
    assert kept == {4: tuple(first.splits)}
    assert len(first.splits) == 3
    assert plan_ranges(4, kept[4]) == ranges_from_splits(first.splits)
    for broken in ({"splits": first.splits}, {"splits": [1, 2], "splitsFor": 4},
                   {"splits": "user0100", "splitsFor": 4}, None):
        assert kept_splits({"status": {"lastSweep": broken}}) == {}
    assert kept_splits({}) == {}


def test_a_halt_stops_every_range_between_users() -> None:
    projects, objects = world()
    engine = engine_on(projects, objects)
    writes_at_halt: list[int] = []

    def halt_after_the_first(_: Report) -> None:
        if not engine.halted.is_set():
            engine.halt()
            writes_at_halt.append(len(projects.writes))

    result = sweep(engine, on_report=halt_after_the_first,
                   plan=SweepPlan(ranges=8, parallel=4))
    assert result.aborted == HALTED
    assert result.scanned < len(projects.projects)
    assert len(projects.writes) == writes_at_halt[0], "nothing written after the halt"


def test_the_breaker_holds_across_parallel_ranges() -> None:
    """Every `ready` project lost a clip: at most the budget is demoted, whatever the
    parallelism, and the rest is held by the breaker."""
    projects, objects = world(heavy=300)
    engine = engine_on(projects, objects, max_destructive=5)
    result = sweep(engine, plan=SweepPlan(ranges=16, parallel=8))
    destructive = [fields for _, fields in projects.writes if fields.get("status") == "draft"
                   or len(fields.get("clipFilenames", [None, None])) < 2]
    assert len(destructive) <= 5
    assert engine.breaker.state.tripped
    held = [r for r in result.reports if r.action is Action.SKIPPED
            and "breaker" in (r.reason or "")]
    assert held, "destructive corrections past the budget are held"


def test_an_outage_in_one_range_stops_the_sweep() -> None:
    projects, objects = world()
    engine = engine_on(projects, objects)
    calls = [0]

    def failing(_: str) -> float:
        calls[0] += 1
        objects.down = calls[0] > 3
        return 0.0

    objects.latency = failing
    result = sweep(engine, dry_run=True, plan=SweepPlan(ranges=8, parallel=2))
    assert result.aborted is not None
    assert "unreachable" in result.aborted
    assert result.scanned < len(projects.projects)


def test_the_spec_takes_ranges_and_parallel_within_bounds() -> None:
    spec = ReconcilerSpec.parse({"storage": {"bucket": "reels"}})
    assert (spec.sweep.ranges, spec.sweep.parallel) == (64, 8)
    for field, value in (("ranges", 0), ("ranges", 4097), ("parallel", 65)):
        with pytest.raises(ConfigError, match=rf"spec\.sweep\.{field}"):
            ReconcilerSpec.parse({"storage": {"bucket": "reels"}, "sweep": {field: value}})
