"""The breaker through the operator, on the real kube-apiserver: a ReelReconciler pointed at
an empty bucket trips on its first sweep (condition, Event, metric), the trip survives a
restart of the operator, and `reelmaker.io/resume-writes` resumes it (echoed to status)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests

from devkit.emulators import Emulators
from devkit.seed import World
from reel_reconciler.operator import REQUESTED_AT, RESUME_WRITES
from tests.support.drifted import seed_drifted
from tests.support.harness import (
    Cluster,
    Operator,
    metric,
    spec_for,
    start_operator,
    started,
    stop_operator,
    wait_for,
)


def tripped(op: Operator) -> float | None:
    """The breaker's gauge on `op`'s /metrics; None while its server is not up yet."""
    try:
        text = op.metrics()
    except requests.ConnectionError:
        return None
    if "reel_reconciler_breaker_tripped{" not in text:
        return None
    return metric(text, "reel_reconciler_breaker_tripped", reconciler=f"{op.namespace}.main")

pytestmark = pytest.mark.cluster


def test_an_empty_bucket_trips_the_breaker_which_a_person_resumes(
        cluster: Cluster, emulators: Emulators, world: World, tmp_path: Path) -> None:
    seed_drifted(world, 200)
    wrong = f"empty-{uuid.uuid4().hex[:8]}"
    world.gcs.create_bucket(wrong)
    before = {snap.id: snap.update_time for snap in world.projects().select([]).stream()}
    spec = spec_for(world)
    spec["storage"] = {"bucket": wrong}
    op = start_operator(cluster, emulators.env(), tmp_path / "first.log", "--standalone")
    try:
        op.create("main", spec)
        started(op, "main")
        op.annotate("main", REQUESTED_AT, "1")
        wait_for(lambda: (op.condition("main", "Drifted") or {}).get("reason")
                 == "BreakerTripped", 60, lambda: f"the breaker to trip\n{op.logs()}")
        assert any("lists nothing under reel-maker/" in m for m in op.events("BreakerTripped"))
        assert tripped(op) == 1
    finally:
        stop_operator(op)
    after = {snap.id: snap.update_time for snap in world.projects().select([]).stream()}
    assert after == before, "no project was emptied"

    again = start_operator(cluster, emulators.env(), tmp_path / "second.log", "--standalone")
    try:
        wait_for(lambda: tripped(again) == 1, 60,
                 lambda: f"the trip to survive the restart\n{again.logs()}")
        again.annotate("main", RESUME_WRITES, "checked-by-sre")
        wait_for(lambda: again.get("main")["status"].get("lastHandledResumeWrites")
                 == "checked-by-sre", 30, lambda: f"the resume echoed\n{again.logs()}")
        assert (again.condition("main", "Drifted") or {}).get("reason") == "WritesResumed"
        assert tripped(again) == 0
    finally:
        stop_operator(again)
