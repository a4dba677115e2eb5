"""Ranged sweeps (issue #26) on Google's Firestore emulator and fake-gcs-server: the listing's
offsets are honoured, a ranged sweep reports what today's one-stream sweep reports, and
sweeps racing the app simulator write nothing of a live or failing generation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devkit.app import ReelApp, Timing
from devkit.seed import World
from reel_reconciler.engine import Engine, sweep
from reel_reconciler.engine.sweep import SweepResult
from reel_reconciler.engine.sweep.ranges import SweepPlan
from tests.integration.test_app_race import engine_for, writes
from tests.integration.test_sweep_stream import TRAP_USERS, _decided, _seed_mixed
from tests.support.patience import bound
from tests.support.sweeping import swept_once

Make = Callable[..., Engine]


def test_the_listing_honours_start_and_end_offsets(world: World, make_engine: Make) -> None:
    """fake-gcs-server (like GCS) lists from startOffset inclusive to endOffset exclusive:
    a range's listing is exactly the names between its bounds, in pages."""
    for user in [*TRAP_USERS, "ab0x", "ab1"]:
        world.put_object(world.clip_path(user, "p", "reeljob-000000000000", 0))
    world.put_object("reel-maker/ab0")
    world.put_object("outside/ab0/x")
    gcs = make_engine(gcs_page_size=2).gcs
    names = sorted(world.object_names(), key=str.encode)
    for start, end in (("reel-maker/ab", "reel-maker/ab0"), ("reel-maker/ab0", None),
                       (None, "reel-maker/b"), ("reel-maker/ab0", "reel-maker/ab1")):
        listed = [obj.name for page in gcs.listing("reel-maker/", start, end) for obj in page]
        expected = [name for name in names if name.startswith("reel-maker/")
                    and (start is None or name.encode() >= start.encode())
                    and (end is None or name.encode() < end.encode())]
        assert listed == expected, (start, end)
        assert expected, "each window holds something"


def _reports(engine: Engine, plan: SweepPlan) -> tuple[dict[str, dict[str, Any]], Any]:
    seen, result = swept_once(engine, plan)
    return {r.project_id: _decided(r.as_json()) for r in seen}, result


def test_a_ranged_sweep_reports_what_todays_sweep_reports(world: World,
                                                          make_engine: Make) -> None:
    _seed_mixed(world)
    project_ids = sorted(doc.id for doc in world.projects().stream())
    engine = make_engine(gcs_page_size=3, page_size=4)
    today, whole = _reports(engine, SweepPlan())
    assert sorted(today) == project_ids
    assert whole.aborted is None
    for ranges, parallel in ((3, 1), (7, 3), (64, 8)):
        ranged, result = _reports(engine, SweepPlan(ranges=ranges, parallel=parallel))
        assert result.aborted is None
        assert ranged == today, (ranges, parallel)
        assert result.scanned == whole.scanned == len(project_ids)
        assert len(result.ranges) == ranges


def race_the_app(world: World, swept: Callable[[Engine], SweepResult]) -> list[SweepResult]:
    """`swept` (enforcing) in a loop while the app runs a generation that succeeds and one
    that fails part-way; neither may be written, each ends as its worker left it."""
    app = ReelApp(world, Timing(window=0.1, per_prompt=0.3, exists_check=0.2))
    app.create_project("p-ok", user="aa-1", prompts=3)
    app.create_project("p-bad", user="zz", prompts=4)
    engine = engine_for(world, settle="5s")
    ok = app.generation("p-ok").start().run_in_thread()
    bad = app.generation("p-bad", fail_at=2).start().run_in_thread()
    results = []
    while not (ok.finished.is_set() and bad.finished.is_set()):
        results.append(swept(engine))
        assert results[-1].aborted is None
    assert (ok.join(bound(60)), bad.join(bound(60))) == ("completed", "failed")
    assert len(results) >= 2
    assert writes(engine, "p-ok") == []
    assert writes(engine, "p-bad") == []
    assert world.project("p-ok")["status"] == "ready"
    bad_doc = world.project("p-bad")
    assert bad_doc["status"] == "error"
    assert "quota" in bad_doc["errorInfo"]["message"]
    return results


def test_ranged_sweeps_racing_the_app_write_no_live_or_failing_generation(
        world: World) -> None:
    results = race_the_app(world, lambda engine: sweep(engine, plan=SweepPlan(16, 4)))
    assert {result.scanned for result in results} == {2}
