"""The breaker on the real emulators: a reconciler pointed at an existing but empty bucket
trips instead of emptying 200 projects, stays tripped across a restart and a fix of its
bucket, shows in a dry run what it would write, and after `resume-writes` makes exactly the
right corrections; a storm of deletion notifications writes at most the budget."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from prometheus_client import generate_latest

from devkit.notifications import Notifications
from devkit.seed import World
from reel_reconciler.engine import sweep
from reel_reconciler.engine.connect import connect
from reel_reconciler.model import Action, ReconcilerId
from reel_reconciler.runtime import ReconcilerRuntime
from reel_reconciler.spec import ReconcilerSpec
from tests.conftest import settings_for
from tests.support.drifted import PER_USER, seed_drifted
from tests.support.harness import metric, wait_for
from tests.support.patience import holds
from tests.support.running import running

PROJECTS = 200
"""Enough that an emptied bucket would be a mass deletion (four times the default budget),
and a storm ten times the storm's budget; the count is not what is measured. Few enough for
the shared emulators (the e2e breaker test seeds as many there)."""
REALLY_GONE = 10



def _clip(world: World, index: int) -> str:
    project_id = f"p{index:06d}"
    return world.clip_path(f"user-{index // PER_USER:05d}", project_id, "reeljob-0", 0)


def _upload(world: World, names: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(world.put_object, names))


def _update_times(world: World) -> dict[str, datetime]:
    return {snap.id: snap.update_time for snap in world.projects().select([]).stream()
            if snap.update_time is not None}


def test_a_wrong_bucket_trips_the_breaker_instead_of_emptying_every_project(
        world: World, cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    seed_drifted(world, PROJECTS)
    _upload(world, [_clip(world, i) for i in range(REALLY_GONE, PROJECTS)])
    wrong = f"empty-{uuid.uuid4().hex[:8]}"
    world.gcs.create_bucket(wrong)
    before = _update_times(world)
    reconciler = ReconcilerId(f"breaker-{uuid.uuid4().hex[:6]}", "test")

    engine = connect(settings_for(world, bucket=wrong), reconciler)
    result = sweep(engine)
    assert _update_times(world) == before, "nothing written: not one project emptied"
    assert engine.breaker.state.tripped, result.as_json()
    assert "lists nothing under reel-maker/" in (engine.breaker.state.reason or "")
    assert result.actions[Action.SKIPPED] >= 1
    assert metric(generate_latest().decode(), "reel_reconciler_breaker_tripped",
                  reconciler=reconciler.label) == 1

    restarted = connect(settings_for(world, bucket=wrong), reconciler)
    assert restarted.breaker.state.tripped, "a restart must not reset a tripped breaker"
    fixed = connect(settings_for(world), reconciler)
    assert fixed.breaker.state.tripped, "fixing the bucket is not a person's resume"
    assert sweep(fixed).actions[Action.CORRECTED] == 0
    dry = sweep(fixed, dry_run=True)
    assert sorted(r.project_id for r in dry.reports if r.action is Action.DRIFT) == [
        f"p{i:06d}" for i in range(REALLY_GONE)], "a dry run shows what resuming would write"

    resumed = cli("resume-writes", "checked-the-bucket", "--reconciler", reconciler.label)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    assert "lists nothing" in resumed.stdout
    fixed.breaker.load()
    done = sweep(fixed)
    assert done.actions[Action.CORRECTED] == REALLY_GONE
    changed = {pid for pid, at in _update_times(world).items() if at != before[pid]}
    assert changed == {f"p{i:06d}" for i in range(REALLY_GONE)}
    assert not fixed.breaker.state.tripped
    assert fixed.breaker.state.resumed_token == "checked-the-bucket"


def emptied(world: World, before: dict[str, datetime]) -> set[str]:
    """The projects written since `before` was read."""
    return {pid for pid, at in _update_times(world).items() if at != before[pid]}


def test_a_storm_of_deletion_notifications_writes_at_most_the_budget(
        notified: tuple[World, Notifications]) -> None:
    world, notes = notified
    budget = 20
    seed_drifted(world, PROJECTS)
    _upload(world, [_clip(world, i) for i in range(PROJECTS)])
    spec = ReconcilerSpec.parse({
        "firestore": {"projectsCollection": world.projects_collection,
                      "jobsCollection": world.jobs_collection},
        "storage": {"bucket": world.bucket, "notifications": {"subscription": notes.path}},
        "settle": "0s", "sweep": {"interval": "1h"},
        "safety": {"maxDestructive": budget, "window": "1h"}})
    storm = ReconcilerId(f"storm-{uuid.uuid4().hex[:6]}", "test")
    with running(ReconcilerRuntime(storm, spec)) as runtime:
        # The uploads' notifications: each project checked, nothing to write.
        wait_for(lambda: metric(generate_latest().decode(), "reel_reconciler_reconcile_total",
                                reconciler=runtime.label, trigger="listener") >= PROJECTS, 30,
                 "the uploads' notifications to have each project checked")
        before = _update_times(world)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(world.delete_object, [_clip(world, i) for i in range(PROJECTS)]))
        wait_for(lambda: runtime.breaker_state.tripped, 60,
                 "the breaker to trip under the storm")
        holds(lambda: len(emptied(world, before)) <= budget, 5,
              "the rest of the storm arriving and being held")
        changed = emptied(world, before)
        assert len(changed) <= budget, f"{len(changed)} projects emptied, budget {budget}"
        assert len(changed) == budget, "the budget itself is spent before the trip"
        assert "more than 20 destructive corrections" in (runtime.breaker_state.reason or "")
        assert metric(generate_latest().decode(), "reel_reconciler_breaker_tripped",
                      reconciler=runtime.label) == 1
