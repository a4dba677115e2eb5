"""Delta rounds (issue #26, item 4) on Google's Firestore emulator and fake-gcs-server: a
round reads Firestore only for users whose storage changed and for projects not at rest,
heals what it reads as the full sweep would, falls back to a full pass where fingerprints
are lost, and writes nothing of a live or failing generation of the app simulator."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from prometheus_client import generate_latest

from devkit.seed import World
from reel_reconciler import defaults
from reel_reconciler.engine import Engine, sweep
from reel_reconciler.engine.sweep import SweepResult
from reel_reconciler.engine.sweep.delta import Schedule, delta_sweep
from reel_reconciler.engine.sweep.ranges import SweepPlan
from reel_reconciler.model import Action, Report
from tests.integration.test_sweep_ranges import race_the_app
from tests.integration.test_sweep_stream import _decided, _seed_mixed
from tests.support.harness import metric

Make = Callable[..., Engine]
PLAN = SweepPlan(ranges=4, parallel=2)
INTERVAL = timedelta(minutes=30)
START = datetime.now(UTC)
ROUND_OPS = {"get_fingerprints", "put_fingerprints", "query_not_at_rest", "query_active_jobs",
             "get_projects", "query_jobs", "count_status"}
"""Firestore requests of a round that passes no range in full and reads no user: its
fingerprints, the indexed pass's two queries and the batched reads of what they found, and
the counts by status."""


def _round(engine: Engine, number: int = 0, dry_run: bool = False
           ) -> tuple[SweepResult, Counter[str], dict[str, Report]]:
    """Round `number` of a timed schedule: its result, its Firestore requests by operation,
    and its reports by project."""
    seen: dict[str, Report] = {}
    before = engine.firestore.requests.by_op()
    result = delta_sweep(engine, Schedule(START + number * INTERVAL, INTERVAL,
                                          defaults.SWEEP_FULL_EVERY),
                         dry_run=dry_run, on_report=lambda r: seen.setdefault(r.project_id, r),
                         plan=PLAN)
    assert result.aborted is None
    return result, engine.firestore.requests.by_op() - before, seen


def _counts(result: SweepResult) -> dict[str, int]:
    assert result.delta is not None
    return result.delta


def _ready_with_clips(world: World, project_id: str, user: str) -> list[str]:
    _, paths = world.generated_project(project_id, user=user, status="ready", prompts=3,
                                       in_gcs=3, in_db=3)
    return paths


def test_a_round_after_a_storage_change_reads_only_that_user_and_heals_it(
        world: World, make_engine: Make) -> None:
    paths = _ready_with_clips(world, "victim", "ab.c")
    _ready_with_clips(world, "neighbour", "ab.c")
    for n, user in enumerate(["a", "ab", "ab-c", "b", "é", "z-last"]):
        _ready_with_clips(world, f"other-{n}", user)
    engine = make_engine(gcs_page_size=2, page_size=3)
    first, _, _ = _round(engine, 0)
    assert _counts(first)["fullRanges"] == len(PLAN.key_ranges())
    assert first.scanned == 8

    quiet, ops, _ = _round(engine, 1)
    assert (_counts(quiet)["fullRanges"], _counts(quiet)["usersRead"], quiet.scanned) == (0, 0, 0)
    assert set(ops) <= ROUND_OPS

    world.delete_object(paths[1])
    healed, ops, seen = _round(engine, 2)
    assert _counts(healed)["usersRead"] == 1
    assert sorted(seen) == ["neighbour", "victim"], "that user's projects, no one else's"
    assert ops["query_user_projects"] == ops["query_user_jobs"] == 1
    assert set(ops) - {"query_user_projects", "query_user_jobs", "update_projects",
                       "update_project"} <= ROUND_OPS
    assert seen["victim"].action is Action.CORRECTED
    assert seen["neighbour"].action is Action.NO_CHANGE
    assert world.project("victim")["clipFilenames"][1] is None
    assert world.project("victim")["status"] == "draft"

    after, _, seen = _round(engine, 3)
    assert (_counts(after)["usersRead"], seen) == (0, {}), "healed: nothing to read again"


def test_a_lost_fingerprint_document_gives_that_range_a_full_pass(world: World,
                                                                   make_engine: Make) -> None:
    users = ["0a", "Hb", "Xb", "zz"]  # one in each of the 4 even ranges
    for n, user in enumerate(users):
        _ready_with_clips(world, f"p{n}", user)
    engine = make_engine()
    _round(engine, 0)
    stored = world.db.collection(defaults.FINGERPRINT_COLLECTION)
    documents = {(doc.to_dict() or {})["lo"]: doc for doc in stored.stream()}
    assert sorted(documents) == ["", "FV0", "V00", "kV0"]
    assert {(doc.to_dict() or {})["users"] for doc in documents.values()} == {1}
    documents["V00"].reference.delete()
    documents["kV0"].reference.update({"prints": b"not fingerprints"})

    result, ops, seen = _round(engine, 1)
    assert _counts(result)["fullRanges"] == 2
    assert ops["stream_projects"] >= 2
    assert sorted(seen) == ["p2", "p3"], "both ranges passed in full, no other"
    assert all(report.action is Action.NO_CHANGE for report in seen.values())
    assert len(list(stored.stream())) == 4, "the full pass stored them again"

    again, _, seen = _round(engine, 2)
    assert (_counts(again)["fullRanges"], seen) == (0, {})


def test_the_indexed_pass_heals_a_stuck_generation_whose_storage_did_not_change(
        world: World, make_engine: Make) -> None:
    """A worker that set `generating` and died before writing a clip: Firestore changed,
    storage did not. The indexed pass finds it at the next round, no listener needed."""
    _ready_with_clips(world, "stuck", "u1")
    _ready_with_clips(world, "calm", "u2")
    engine = make_engine()
    _round(engine, 0)
    world.projects().document("stuck").update({"status": "generating"})
    world.add_job("stuck", user="u1", status="processing", prompt_count=3,
                  created_ago=timedelta(hours=2), updated_ago=timedelta(hours=2))

    result, ops, seen = _round(engine, 1)
    assert _counts(result)["usersRead"] == 0
    assert _counts(result)["indexed"] == 1
    assert sorted(seen) == ["stuck"]
    assert "stream_projects" not in ops
    assert seen["stuck"].action is Action.CORRECTED
    assert world.project("stuck")["status"] == "ready"


def test_a_ranged_delta_round_reports_what_a_full_sweep_reports(world: World,
                                                                make_engine: Make) -> None:
    """Every kind of drift the mixed seed holds, made by storage alone after a first round:
    the delta round reports each drifted project as the full sweep does, and nothing the
    full sweep would not."""
    _seed_mixed(world)
    ready_1 = _ready_with_clips(world, "ready-1", "a")
    ready_2 = _ready_with_clips(world, "ready-2", "ab-c")
    _, partial = world.generated_project("partial", user="ab.c", status="draft", prompts=3,
                                         in_gcs=2, in_db=2)
    stitched = world.put_object(world.stitched_path("é", "stitched"))
    _ready_with_clips(world, "stitched", "é")
    world.projects().document("stitched").update({"stitchedFilename": stitched})
    engine = make_engine(gcs_page_size=3, page_size=4)
    _round(engine, 0)
    world.delete_object(ready_1[0])
    world.delete_object(ready_2[2])
    world.put_object(partial[2])  # a worker that died after its upload: the slot restored
    world.delete_object(stitched)

    full: dict[str, Any] = {}
    sweep(engine, dry_run=True, plan=PLAN,
          on_report=lambda r: full.setdefault(r.project_id, _decided(r.as_json())))
    result, _, seen = _round(engine, 2, dry_run=True)
    delta = {pid: _decided(report.as_json()) for pid, report in seen.items()}
    assert _counts(result)["fullRanges"] == 0
    for pid, report in delta.items():
        assert report == full[pid], pid
    drift = {pid for pid, report in full.items() if report["action"] == "drift"}
    assert {"ready-1", "ready-2", "partial", "stitched"} <= drift
    assert drift <= set(delta), drift - set(delta)


def test_delta_rounds_racing_the_app_write_no_live_or_failing_generation(
        world: World) -> None:
    """Each clip the app writes changes a folder and brings its user to the next round;
    neither the live generation nor the failing one is written."""
    rounds = count()
    results = race_the_app(world, lambda engine: _round(engine, next(rounds))[0])
    assert sum(_counts(result)["usersRead"] for result in results) >= 1


def test_a_firestore_only_change_at_rest_waits_for_its_ranges_full_pass(
        world: World, make_engine: Make) -> None:
    """The one class a delta round does not see: the app wiping the clip list of a `ready`
    project, storage untouched (no listener watches `ready`). Rounds before the range's full
    pass leave it; the round at which it falls due heals it, within fullEvery and an interval
    of the range's last full pass (half of one here: rounds without jitter)."""
    paths = _ready_with_clips(world, "wiped", "zz")  # the last of 4 ranges: due last
    engine = make_engine()
    _round(engine, 0)
    world.projects().document("wiped").update({"clipFilenames": [None, None, None]})
    rounds = int(defaults.SWEEP_FULL_EVERY / INTERVAL) + 1
    healed_at = None
    for number in range(1, rounds + 1):
        result, _, seen = _round(engine, number)
        if "wiped" in seen:
            healed_at = number
            assert seen["wiped"].action is Action.CORRECTED
            break
        assert _counts(result)["usersRead"] == 0
    assert healed_at is not None, "no full pass within fullEvery"
    assert healed_at * INTERVAL <= defaults.SWEEP_FULL_EVERY + INTERVAL / 2
    assert healed_at > 1, "not the next round: only the full pass reads it"
    assert world.project("wiped")["clipFilenames"] == paths


def test_a_wrong_bucket_brings_every_user_to_the_round_and_trips_the_breaker(
        world: World, make_engine: Make) -> None:
    """Pointed at an empty bucket after a good round, every folder has vanished: every user
    is read, the breaker trips after its budget, and the users it held stay marked, so that
    the round after the bucket is put right reads them again and writes nothing more."""
    paths = {f"p{n}": _ready_with_clips(world, f"p{n}", f"user-{n:02d}") for n in range(12)}
    _round(make_engine())
    wrong = f"empty-{uuid.uuid4().hex[:8]}"
    world.gcs.create_bucket(wrong)
    misled = make_engine(bucket=wrong, max_destructive=3)
    result, _, seen = _round(misled, 1)
    assert _counts(result)["usersRead"] == 12
    actions = Counter(report.action for report in seen.values())
    assert actions[Action.CORRECTED] <= 3
    assert actions[Action.SKIPPED] >= 9
    assert misled.breaker.state.tripped
    untouched = [pid for pid in paths if world.project(pid)["status"] == "ready"]
    assert len(untouched) >= 9
    righted, _, seen = _round(make_engine(), 2)
    assert _counts(righted)["usersRead"] >= 9, "the held users are read again"
    assert all(world.project(pid)["status"] == "ready" for pid in untouched)


def test_a_round_that_passes_no_range_in_full_still_counts_projects_by_status(
        world: World, make_engine: Make) -> None:
    """The gauge of projects by status follows a Firestore-only change at a round that read
    no project: Firestore counts each status."""
    for n in range(5):
        _ready_with_clips(world, f"p{n}", f"user-{n}")
    world.add_project("idea", user="user-9", status="draft", prompts=2)
    engine = make_engine()
    label = engine.reconciler.label

    def gauge(status: str) -> float:
        return metric(generate_latest().decode(), "reel_reconciler_projects",
                      reconciler=label, status=status)

    _round(engine, 0)
    assert (gauge("ready"), gauge("draft")) == (5, 1)
    world.projects().document("p0").update({"status": "draft"})  # storage untouched
    result, _, seen = _round(engine, 1)
    assert (_counts(result)["fullRanges"], seen) == (0, {})
    assert (gauge("ready"), gauge("draft")) == (4, 2)
