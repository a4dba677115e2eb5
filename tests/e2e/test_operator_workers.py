"""Operator pods as sweep workers (issue #26), on the real kube-apiserver and emulators: a
ReelReconciler with `sweep.distribution` is coordinated by the active operator, and both
operator processes, the active one and a standby paused by Kopf peering, are started with
`--work-subscription` and take ranges of its rounds from the shared subscription while the
app simulator generates beside them. A round completes with every range reported, the
ranges' sum shows in `status.lastSweep` (every project scanned, nothing aborted), every
drifted project is corrected once, the app's live generations are left alone, and the
standby sweeps ranges too.

The Pub/Sub emulator hands a whole round to one subscriber and the others wait for the next
(tests/integration/test_sweep_distributed.py), so which process sweeps a given round is the
emulator's choice: the test lets rounds come until the standby has swept one."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from kubernetes import client

from devkit.app import ReelApp, Timing
from devkit.emulators import Emulators
from devkit.notifications import Notifications
from devkit.seed import World
from reel_reconciler import defaults
from tests.support.drifted import UNBRAKED, seed_drifted
from tests.support.harness import (
    Cluster,
    Operator,
    spec_for,
    start_operator,
    started,
    stop_operator,
    wait_for,
)
from tests.support.patience import bound
from tests.support.work import (
    records,
    spread_user,
    work_topic,  # noqa: F401 - fixture
)

pytestmark = pytest.mark.cluster

PROJECTS = 400
"""Drifted projects, ten per owner spread over the keyspace: every range has work."""
RANGES = 8
INTERVAL = "5s"


def _rounds(op: Operator) -> list[dict[str, Any]]:
    """The rounds this coordinator finished, oldest first."""
    return [r for r in records(op.log) if r.get("message") == "sweep round finished"]


def _swept_by(world: World, round_id: str) -> dict[int, str]:
    """Each reported range of a round, and the worker (host:pid) that swept it."""
    return {int((snap.to_dict() or {})["index"]): str((snap.to_dict() or {})["worker"])
            for snap in world.db.collection(defaults.ROUNDS_COLLECTION)
            .where(filter=FieldFilter("round", "==", round_id)).stream()}


def _pod(op: Operator) -> str:
    return f"{os.uname().nodename}:{op.proc.pid}"


def _corrected(world: World) -> set[str]:
    return {snap.id for snap in world.projects().select(["lastReconciliation"]).stream()
            if (snap.to_dict() or {}).get("lastReconciliation")}


def _whole_round_in_status(op: Operator) -> dict[str, Any] | None:
    """status.lastSweep once it shows a round that scanned every project: a range not
    reported leaves a round aborted, with fewer projects scanned."""
    last: dict[str, Any] = op.get("main")["status"].get("lastSweep", {})
    return last if last.get("scanned") == PROJECTS + 2 and "aborted" not in last else None


def _complete_round_swept_by(world: World, active: Operator,
                             who: Callable[[set[str]], bool]) -> tuple[str, dict[int, str]]:
    """The first complete round whose workers satisfy `who`, as (round, range -> worker)."""
    for finished in _rounds(active):
        if finished.get("aborted") is not None or finished.get("reported") != RANGES:
            continue
        swept = _swept_by(world, str(finished["round"]))
        if who(set(swept.values())):
            return str(finished["round"]), swept
    raise AssertionError("no such round yet")


def test_active_and_standby_operator_pods_work_the_ranges_of_distributed_rounds(
        cluster: Cluster, emulators: Emulators, world: World, work: Notifications,
        tmp_path: Path) -> None:
    seed_drifted(world, PROJECTS, spread_user)
    app = ReelApp(world, Timing(window=0.1, per_prompt=0.4, exists_check=0.2))
    app.create_project("p-ok", user="Ma7", prompts=3)
    app.create_project("p-bad", user="zq", prompts=4)
    peering: Any = client.CustomObjectsApi(cluster.api)
    peering.create_namespaced_custom_object(
        "kopf.dev", "v1", cluster.namespace, "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
         "metadata": {"name": "reel-reconciler", "namespace": cluster.namespace}})
    env = {**emulators.env(), "PUBSUB_EMULATOR_HOST": work.pubsub.host, "REEL_PAGE_SIZE": "25"}
    args = ("--peering", "reel-reconciler", "--work-subscription", work.path,
            "--sweep-parallel", "1")
    active = start_operator(cluster, env, tmp_path / "active.log", *args, "--priority", "200")
    standby: Operator | None = None
    try:
        standby = start_operator(cluster, env, tmp_path / "standby.log", *args,
                                 "--priority", "100")
        wait_for(lambda: len(peering.get_namespaced_custom_object(
            "kopf.dev", "v1", cluster.namespace, "kopfpeerings", "reel-reconciler")
            .get("status", {})) == 2, 60, "both replicas in the peering object")
        ok = app.generation("p-ok").start().run_in_thread()
        bad = app.generation("p-bad", fail_at=2).start().run_in_thread()
        active.create("main", spec_for(
            world, settle="5s", safety={"maxDestructive": UNBRAKED},
            # fullEvery at the interval: every round passes every range in full (timed
            # rounds are delta rounds otherwise), so that each round scans every project.
            sweep={"interval": INTERVAL, "fullEvery": INTERVAL, "ranges": RANGES,
                   "parallel": 1,
                   "distribution": {"topic": work.topic_path, "subscription": work.path}}))
        started(active, "main")
        assert (ok.join(bound(60)), bad.join(bound(60))) == ("completed", "failed")
        drifted = {f"p{i:06d}" for i in range(PROJECTS)}
        wait_for(lambda: _corrected(world) == drifted or None, 90,
                 lambda: f"every drifted project corrected\n{active.logs()}")
        first, swept = wait_for(
            lambda: _complete_round_swept_by(world, active, bool), 60,
            lambda: f"a complete round\n{active.logs()}")
        pods = {_pod(active), _pod(standby)}
        assert sorted(swept) == list(range(RANGES)), "every range reported once"
        assert set(swept.values()) <= pods, f"ranges swept by someone else: {swept}"
        on_standby = standby
        _, by_standby = wait_for(lambda: _complete_round_swept_by(
            world, active, lambda workers: _pod(on_standby) in workers), 120,
            lambda: f"a round swept by the standby\n{on_standby.logs()}")
        summary = wait_for(lambda: _whole_round_in_status(active), 30,
                           lambda: f"a complete round in status.lastSweep\n{active.logs()}")
        text = standby.log.read_text()
    finally:
        if standby is not None:
            stop_operator(standby)
        stop_operator(active)

    print(f"\nfirst complete round {first}: {dict(Counter(swept.values()))}; "
          f"a round with the standby: {dict(Counter(by_standby.values()))}")
    assert summary["errors"] == 0, summary
    assert '"message": "sweep range finished"' in text, "the standby swept ranges"
    writes = Counter(r["projectId"] for op in (active, standby) for r in records(op.log)
                     if r.get("logger") == "reel_reconciler.changes"
                     and r.get("outcome") == "written")
    assert set(writes) <= drifted, "nothing but drifted projects written"
    assert max(writes.values()) == 1, "no project written twice"
    assert _corrected(world) == drifted, "every drifted project corrected, nothing else"
    assert world.project("p-ok")["status"] == "ready"
    assert world.project("p-bad")["status"] == "error"
