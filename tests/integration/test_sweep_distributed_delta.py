"""Distributed rounds as delta rounds (issue #26, items 3 and 4) on the Pub/Sub and Firestore
emulators and fake-gcs-server, with the coordinator and a worker in this process: a forced
round's ranges send their projects per user back and the next round is cut from them; after
a full round, a timed round reads Firestore only for the users whose storage changed (counted
by the billed documents read) and heals them; racing the app simulator, the rounds catch a
drift made meanwhile and write neither the live nor the failing generation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devkit.notifications import Notifications
from devkit.seed import World
from reel_reconciler import defaults
from reel_reconciler.engine import Engine, SweepResult, Trigger
from reel_reconciler.engine.sweep.ranges import SweepPlan, plan_ranges
from reel_reconciler.model import Action, ReconcilerId
from reel_reconciler.runtime.rounds import RoundCoordinator
from reel_reconciler.runtime.worker import SweepWorker
from reel_reconciler.spec import ReconcilerSpec
from reel_reconciler.stores.work import WorkTopic
from reel_reconciler.watch import WatchOptions
from tests.conftest import settings_for
from tests.integration.test_app_race import engine_for
from tests.integration.test_sweep_ranges import race_the_app
from tests.support.patience import wait_for
from tests.support.work import work_topic  # noqa: F401 - fixture

RANGES = 4
USERS = 24
PER_USER = 2
QUIET = RANGES + 10
"""Documents a round that reads no user may read: the ranges' fingerprints, the counts by
status (5), the indexed pass's queries and the count of projects, whatever the projects."""


@pytest.fixture
def worker(work: Notifications) -> Iterator[SweepWorker]:
    """A worker pulling the round's ranges in this process, as a `watch` with distribution."""
    running = SweepWorker(work.path, 1)
    running.start()
    yield running
    running.stop(timeout=30)


def _ready(world: World, project_id: str, user: str) -> list[str]:
    _, paths = world.generated_project(project_id, user=user, status="ready", prompts=3,
                                       in_gcs=3, in_db=3)
    return paths


def _spec(world: World, **overrides: Any) -> ReconcilerSpec:
    settings = settings_for(world, **overrides)
    return WatchOptions(sweep_ranges=RANGES, sweep_parallel=1).spec(settings)


def _round(coordinator: RoundCoordinator, engine: Engine, spec: ReconcilerSpec,
           trigger: Trigger = Trigger.SWEEP, splits: tuple[str, ...] = ()) -> SweepResult:
    result = coordinator.run(engine, spec, 1, SweepPlan(RANGES, 1, splits), trigger)
    assert result.aborted is None, result.aborted
    return result


def _delta(result: SweepResult) -> dict[str, int]:
    assert result.delta is not None
    return result.delta


def test_a_distributed_delta_round_reads_only_changed_users_and_cuts_from_counts(
        world: World, work: Notifications, worker: SweepWorker,
        make_engine: Any) -> None:
    del worker  # running: it sweeps the ranges
    paths = {}
    for n in range(USERS):  # all alike: an even cut puts every user in its last range
        for p in range(PER_USER):
            paths[f"u{n:02d}-{p}"] = _ready(world, f"u{n:02d}-{p}", f"user{n:02d}")
    projects = USERS * PER_USER
    spec = _spec(world)
    engine = make_engine()
    coordinator = RoundCoordinator(WorkTopic(work.topic_path), ReconcilerId("ddelta", "test"))

    forced = _round(coordinator, engine, spec, Trigger.API)
    assert forced.delta is None, "a forced round passes every range in full"
    assert [summary.scanned for summary in forced.ranges] == [0, 0, 0, projects]
    assert forced.splits_for == RANGES
    assert len(forced.splits) == RANGES - 1, forced.splits

    cut = _round(coordinator, engine, spec, splits=tuple(forced.splits))
    assert [summary.key_range for summary in cut.ranges] == plan_ranges(RANGES, forced.splits)
    assert max(summary.scanned for summary in cut.ranges) <= 2 * projects / RANGES, \
        "the second round's ranges hold similar work"
    assert _delta(cut)["fullRanges"] == RANGES, "new ranges: no fingerprints yet"
    assert cut.scanned == projects
    stored = world.db.collection(defaults.FINGERPRINT_COLLECTION).stream()
    assert len(list(stored)) == RANGES

    world.delete_object(paths["u07-1"][1])
    delta = _round(coordinator, engine, spec, splits=tuple(forced.splits))
    assert (_delta(delta)["fullRanges"], _delta(delta)["usersRead"]) == (0, 1)
    assert delta.scanned == PER_USER, "the changed user's projects, no one else's"
    assert delta.actions[Action.CORRECTED] == 1
    assert world.project("u07-1")["clipFilenames"][1] is None

    quiet = _round(coordinator, engine, spec, splits=tuple(forced.splits))
    print(f"\nFirestore documents read: full round {cut.documents_read}, delta round "
          f"{delta.documents_read}, quiet round {quiet.documents_read}")
    assert (_delta(quiet)["usersRead"], quiet.scanned) == (0, 0)
    assert cut.documents_read >= 2 * projects, "a full round reads every project and job"
    assert quiet.documents_read <= QUIET, f"no project read: {quiet.documents_read}"
    assert delta.documents_read - quiet.documents_read <= 4 * PER_USER, \
        "the changed user's projects and jobs (and a project read again to correct it)"


def test_distributed_delta_rounds_racing_the_app_catch_a_drift_made_meanwhile(
        world: World, work: Notifications, worker: SweepWorker) -> None:
    """The app generates beside the rounds; after the first round a clip of a settled project
    disappears. A later round, passing no range in full, reads that user and heals it."""
    del worker
    victim = _ready(world, "victim", "mM")
    spec = _spec(world, settle="5s")
    coordinator = RoundCoordinator(WorkTopic(work.topic_path), ReconcilerId("ddrace", "test"))
    rounds: list[SweepResult] = []

    def distributed(engine: Engine) -> SweepResult:
        rounds.append(_round(coordinator, engine, spec))
        if len(rounds) == 1:
            world.delete_object(victim[0])
        return rounds[-1]

    race_the_app(world, distributed)
    engine = engine_for(world, settle="5s")

    def healed() -> SweepResult | None:
        """A round that corrected the victim (its clips may still be inside the settle
        window when the race ends: then the next rounds, storage unchanged, read it again)."""
        found = next((result for result in rounds[1:] if result.actions[Action.CORRECTED]),
                     None)
        if found is None:
            rounds.append(_round(coordinator, engine, spec))
        return found

    corrected = wait_for(healed, 30, "a round to correct the victim")
    assert _delta(corrected)["fullRanges"] == 0, "by the delta, not a full pass"
    assert world.project("victim")["clipFilenames"][0] is None
    assert sum(_delta(result)["usersRead"] for result in rounds[1:]) >= 2, \
        "the app's folders and the victim's were read"
