"""Stop means stop, on the real kube-apiserver and emulators: mid-sweep over thousands of
drifted projects, an Observe switch, a suspend, a delete and a pause by a replica of higher
priority each end the old runtime's writes within seconds of the API server accepting the
change; the sweep does not run on to its end, and the operator goes on running. Cycles of
stop and start leave one runtime, a steady thread count and no series of what was deleted."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from devkit.emulators import Emulators
from devkit.seed import World
from reel_reconciler.operator import GROUP, PLURAL, REQUESTED_AT, VERSION
from tests.support.drifted import (
    UNBRAKED,
    emulators_of_their_own,  # noqa: F401 - fixture
    seed_drifted,
    written_times,
)
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
from tests.support.patience import bound, holds
from tests.support.work import records

pytestmark = pytest.mark.cluster

DRIFTED = 5_000
"""About three times what one seeded set had seen written across its three stops when each
waited for 400 corrections (2,650 of 30,000); now each waits for UNDER_WAY + STILL_WRITING:
the sweep is still far from its end when each stop lands. More costs time before the first
write too: the index-less emulator sorts the whole collection for each range's stream."""
STOP_WITHIN = 5.0
"""Seconds from the API server's acceptance of a change to the old runtime's last write."""
UNDER_WAY = 100
"""Corrections a forced sweep has made before it counts as under way."""
STILL_WRITING = 50
"""Corrections it makes after that, before the stop: a sweep that stalled proves nothing."""
QUIET = 2.0
"""Seconds to keep watching, once the old runtime has logged its stop, for a write after
it: a sweep the stop did not end goes on writing many times a second."""



def corrected(op: Operator, name: str) -> float:
    return metric(op.metrics(), "reel_reconciler_reconcile_total", trigger="annotation",
                  action="corrected", reconciler=f"{op.namespace}.{name}")


def caught_up(op: Operator, name: str) -> None:
    """The runtime of the spec just written runs (not the one before it: a forced sweep
    asked for earlier would run in the old one and end with it)."""

    def current() -> bool:
        obj = op.get(name)
        ready = op.condition_is(name, "Ready", "True")
        return ready and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]

    wait_for(current, 60, lambda: f"the new spec's runtime to start\n{op.logs()}")


def unbraked(world: World) -> dict[str, Any]:
    """Every drifted project here is a destructive correction: the brake is not under test."""
    return spec_for(world, safety={"maxDestructive": UNBRAKED})


def sweep_under_way(op: Operator, name: str) -> None:
    """A forced full sweep, asked for and answered at once, that has begun writing."""
    asked = time.monotonic()
    op.annotate(name, REQUESTED_AT, uuid.uuid4().hex)
    annotated = time.monotonic() - asked
    assert annotated < bound(5), "the annotation's handler must not hold the API call"
    wait_for(lambda: corrected(op, name) >= UNDER_WAY, 60,
             lambda: f"the forced sweep to start correcting\n{op.logs()}")
    # Still writing at the moment of the stop: a sweep that had stalled would prove nothing.
    before = corrected(op, name)
    wait_for(lambda: corrected(op, name) >= before + STILL_WRITING, 30,
             lambda: f"the sweep to keep correcting past {before}\n{op.logs()}")


def stops(op: Operator, name: str) -> int:
    """How many runtimes of `name` have logged that they stopped (their drain is over)."""
    label = f"{op.namespace}.{name}"
    return sum(1 for r in records(op.log)
               if r.get("message") == "reconciler stopped" and r.get("reconciler") == label)


def assert_stopped_within(world: World, accepted: float, op: Operator, stopped: int) -> None:
    """The old runtime stops (its `stopped`-th stop of the test), nothing is written after
    that, and its last write came within STOP_WITHIN of `accepted`."""
    wait_for(lambda: stops(op, "main") >= stopped, 30,
             lambda: f"the old runtime to stop\n{op.logs()}")
    settled = len(written_times(world))
    holds(lambda: len(written_times(world)) == settled, QUIET,
          lambda: f"no write after the runtime stopped\n{op.logs()}")
    times = written_times(world)
    assert times, "the sweep wrote before the stop"
    last = max(t.timestamp() for t in times)
    lag = last - accepted
    print(f"stopped: {len(times)} of {DRIFTED} written; last write {lag:+.3f}s after the "
          "change was accepted")
    assert lag <= bound(STOP_WITHIN), (
        f"a write {lag:.1f}s after the stop was accepted\n{op.logs()}")
    assert len(times) < DRIFTED, "the sweep ran to its end: the stop did not end it"
    assert op.proc.poll() is None, f"the operator exited\n{op.logs()}"


@pytest.fixture
def operator(cluster: Cluster, emulators: Emulators, world: World,
             tmp_path: Path) -> Iterator[Operator]:
    seed_drifted(world, DRIFTED)
    handle = start_operator(cluster, emulators.env(), tmp_path / "operator.log", "--standalone")
    try:
        yield handle
    finally:
        stop_operator(handle)


def _patch_spec(op: Operator, name: str, spec: dict[str, Any]) -> None:
    op.api.patch_namespaced_custom_object(GROUP, VERSION, op.namespace, PLURAL, name,
                                          {"spec": spec})


def _names(op: Operator) -> list[str]:
    found: Any = op.api.list_namespaced_custom_object(GROUP, VERSION, op.namespace, PLURAL)
    return [item["metadata"]["name"] for item in found["items"]]


def _delete(op: Operator, name: str) -> None:
    op.api.delete_namespaced_custom_object(GROUP, VERSION, op.namespace, PLURAL, name)


def test_observe_suspend_and_delete_each_end_the_writes_of_a_sweep_in_flight_within_seconds(
        operator: Operator, world: World) -> None:
    """One seeded set of drifted projects, three stops in turn: each mid-sweep, each undone
    before the next (a sweep stopped early leaves most of the drift for the next one)."""
    operator.create("main", unbraked(world))
    started(operator, "main")

    for stop, undo in (({"mode": "Observe"}, {"mode": "Enforce"}),
                       ({"suspend": True}, {"suspend": False}), (None, None)):
        sweep_under_way(operator, "main")
        stopped = stops(operator, "main") + 1
        if stop is None:
            _delete(operator, "main")
        else:
            _patch_spec(operator, "main", stop)
        assert_stopped_within(world, time.time(), operator, stopped)
        if undo is not None:
            _patch_spec(operator, "main", undo)
            caught_up(operator, "main")
    wait_for(lambda: "main" not in _names(operator), 30,
             f"the deleted resource to be gone, not stuck\n{operator.logs()}")
    assert f'reconciler="{operator.namespace}.main"' not in operator.metrics()


def test_a_pause_by_a_replica_of_higher_priority_ends_the_writes_within_seconds(
        cluster: Cluster, emulators: Emulators, world: World, tmp_path: Path) -> None:
    seed_drifted(world, DRIFTED)
    peering: Any = client.CustomObjectsApi(cluster.api)
    peering.create_namespaced_custom_object(
        "kopf.dev", "v1", cluster.namespace, "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
         "metadata": {"name": "reel-reconciler", "namespace": cluster.namespace}})
    args = ("--peering", "reel-reconciler")
    first = start_operator(cluster, emulators.env(), tmp_path / "first.log", *args,
                           "--priority", "100")
    second: Operator | None = None
    try:
        first.create("main", unbraked(world))
        started(first, "main")
        sweep_under_way(first, "main")
        second = start_operator(cluster, emulators.env(), tmp_path / "second.log", *args,
                                "--priority", "200")
        # The pause is accepted once the second replica's keep-alive is in the peering object.
        wait_for(lambda: len(peering.get_namespaced_custom_object(
            "kopf.dev", "v1", cluster.namespace, "kopfpeerings", "reel-reconciler")
            .get("status", {})) == 2, 60, "the second replica in the peering object")
        accepted = time.time()
        assert_stopped_within(world, accepted, first, 1)
        wait_for(lambda: requests.get(f"http://127.0.0.1:{first.metrics_port}/readyz",
                                      timeout=5).json()["reconcilers"] == 0, 30,
                 f"the paused replica to run no reconciler\n{first.logs()}")
    finally:
        if second is not None:
            stop_operator(second)
        stop_operator(first)


def _threads(op: Operator) -> int:
    for line in Path(f"/proc/{op.proc.pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def _running(op: Operator) -> int:
    body: dict[str, int] = requests.get(f"http://127.0.0.1:{op.metrics_port}/readyz",
                                        timeout=5).json()
    return body["reconcilers"]


def test_twenty_stop_start_cycles_leave_one_runtime_and_no_leaks(
        cluster: Cluster, emulators: Emulators, world: World, tmp_path: Path) -> None:
    op = start_operator(cluster, emulators.env(), tmp_path / "operator.log", "--standalone")
    # ListenerHealthy, which each start waits for, follows the first watchdog tick after a
    # heartbeat is heard: fast beats make thirty starts quick, and change nothing stopped.
    cycling = spec_for(world, listeners={"heartbeatInterval": "200ms",
                                         "silenceThreshold": "6s"})
    label = f'reconciler="{op.namespace}.cycle"'
    try:
        counts: list[int] = []
        for cycle in range(20):
            if cycle % 2 == 0:
                op.create("cycle", cycling)
                started(op, "cycle")
                _delete(op, "cycle")
                wait_for(lambda: _running(op) == 0 and label not in op.metrics(), 30,
                         f"the deleted reconciler's runtime and series to go\n{op.logs()}")
            else:
                op.create("cycle", cycling)
                started(op, "cycle")
                _patch_spec(op, "cycle", {"suspend": True})
                wait_for(lambda: _running(op) == 0, 30, "the suspended runtime to stop")
                _patch_spec(op, "cycle", {"suspend": False})
                started(op, "cycle")
                assert _running(op) == 1
                _delete(op, "cycle")
                wait_for(lambda: _running(op) == 0 and label not in op.metrics(), 30,
                         f"the deleted reconciler's runtime and series to go\n{op.logs()}")
            wait_for(lambda: "cycle" not in _names(op), 30, "the resource to be gone")
            counts.append(_threads(op))
        print(f"threads after each cycle: {counts}")
        assert max(counts[10:]) <= max(counts[:5]) + 2, f"threads grow: {counts}"
        op.create("cycle", cycling)
        started(op, "cycle")
        assert _running(op) == 1
        text = op.metrics()
        assert metric(text, "reel_reconciler_running", reconciler=f"{op.namespace}.cycle") == 1
        assert metric(text, "reel_reconciler_resources_running") == 1
    finally:
        stop_operator(op)


def test_a_reconciler_that_cannot_connect_shows_as_wanted_but_not_running(
        cluster: Cluster, emulators: Emulators, world: World, tmp_path: Path) -> None:
    """The series that the ReelReconcilerNotRunning alert reads, from a live operator."""
    op = start_operator(cluster, emulators.env(), tmp_path / "operator.log", "--standalone")
    try:
        spec = spec_for(world)
        spec["storage"] = {"bucket": f"missing-{uuid.uuid4().hex[:8]}"}
        op.create("broken", spec)
        wait_for(lambda: (op.condition("broken", "Ready") or {}).get("reason")
                 == "ConnectFailed", 60, f"ConnectFailed\n{op.logs()}")
        mine = {"reconciler": f"{op.namespace}.broken"}
        text = op.metrics()
        assert metric(text, "reel_reconciler_wanted", **mine) == 1
        assert metric(text, "reel_reconciler_running", **mine) == 0
        assert metric(text, "reel_reconciler_resources_wanted") == 1
        assert metric(text, "reel_reconciler_resources_running") == 0
        _patch_spec(op, "broken", {"suspend": True})
        wait_for(lambda: metric(op.metrics(), "reel_reconciler_wanted", **mine) == 0, 30,
                 "a suspended reconciler is not wanted")
        assert metric(op.metrics(), "reel_reconciler_resources_wanted") == 0
    finally:
        stop_operator(op)


def test_two_replicas_with_default_priorities_keep_exactly_one_running(
        cluster: Cluster, emulators: Emulators, world: World, tmp_path: Path) -> None:
    """No --priority: each replica draws one that no live peer holds, so Kopf never pauses
    both (a tie pauses every replica that has it)."""
    peering: Any = client.CustomObjectsApi(cluster.api)
    peering.create_namespaced_custom_object(
        "kopf.dev", "v1", cluster.namespace, "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
         "metadata": {"name": "reel-reconciler", "namespace": cluster.namespace}})
    args = ("--peering", "reel-reconciler")
    first = start_operator(cluster, emulators.env(), tmp_path / "first.log", *args)
    second: Operator | None = None
    try:
        first.create("main", spec_for(world))
        started(first, "main")
        second = start_operator(cluster, emulators.env(), tmp_path / "second.log", *args)
        peers = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(
            peering.get_namespaced_custom_object("kopf.dev", "v1", cluster.namespace,
                                                 "kopfpeerings", "reel-reconciler")
            .get("status", {})), 60, "both replicas in the peering object")
        priorities = {peer["priority"] for peer in peers.values()}
        assert len(priorities) == 2, f"the replicas drew one priority: {peers}"
        both = (first, second)
        wait_for(lambda: sum(_running(op) for op in both) == 1, 60,
                 lambda: f"exactly one replica running\n{first.logs()}\n{second.logs()}")
        holds(lambda: sum(_running(op) for op in both) == 1, 10, "exactly one replica running")
    finally:
        if second is not None:
            stop_operator(second)
        stop_operator(first)
