"""Stopping and being seen, without Kubernetes: SIGTERM ends `watch`'s writes mid-sweep within
seconds, two processes running one reconciler show as a split brain, and a hung watchdog
timer fails liveness (/livez) while readiness would still say yes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from prometheus_client import generate_latest

from devkit.emulators import Emulators, free_port
from devkit.seed import World
from reel_reconciler.model import ReconcilerId
from reel_reconciler.runtime import Hooks, ReconcilerRuntime
from reel_reconciler.runtime.liveness import stalled
from reel_reconciler.runtime.server import start_server
from reel_reconciler.spec import ReconcilerSpec
from tests.conftest import settings_for
from tests.support.drifted import (
    UNBRAKED,
    emulators_of_their_own,  # noqa: F401 - fixture
    seed_drifted,
    written_times,
)
from tests.support.harness import metric, wait_for
from tests.support.patience import bound, holds
from tests.support.watching import start_watch

DRIFTED = 4_000
"""Ten times what the sweep had written when SIGTERM came (390, bench/RESULTS.md)."""



def test_sigterm_mid_sweep_ends_the_writes_within_seconds(emulators: Emulators, world: World,
                                                           tmp_path: Path) -> None:
    seed_drifted(world, DRIFTED)
    watch = start_watch(emulators, world, tmp_path / "watch.log", "--settle", "0s",
                        "--sweep-interval", "1s", "--max-destructive", str(UNBRAKED))
    try:
        wait_for(lambda: metric(watch.get("/metrics").text, "reel_reconciler_reconcile_total",
                                trigger="sweep", action="corrected") >= 200
                 if watch.ready() else False, 60, lambda: f"the sweep to write\n{watch.logs()}")
        signalled = time.time()
        code, _ = watch.terminate(30)
    finally:
        watch.kill()
    assert code == 0, watch.logs()
    times = written_times(world)
    lag = max(t.timestamp() for t in times) - signalled
    print(f"SIGTERM: {len(times)} of {DRIFTED} written; last write {lag:+.3f}s after it")
    assert lag <= bound(5.0), f"a write {lag:.1f}s after SIGTERM\n{watch.logs()}"
    assert len(times) < DRIFTED, "the sweep ran to its end before SIGTERM"


def test_two_processes_running_one_reconciler_show_as_split_brain(
        emulators: Emulators, world: World, tmp_path: Path) -> None:
    """Two `watch` processes against the same database beat under one name: the one whose
    beats keep finding the other's last write counts every one (the other's guard still
    holds, since the loser's write never lands), so the sum over the replicas grows."""
    first = start_watch(emulators, world, tmp_path / "first.log", "--settle", "0s")
    second = start_watch(emulators, world, tmp_path / "second.log", "--settle", "0s")
    try:
        for each in (first, second):
            each.wait_ready()
        wait_for(lambda: sum(metric(each.get("/metrics").text,
                                    "reel_reconciler_heartbeat_conflicts_total")
                             for each in (first, second)) >= 3, 60,
                 lambda: f"heartbeat conflicts\n{first.logs()}\n{second.logs()}")
    finally:
        first.terminate()
        second.terminate()


def test_one_process_alone_has_no_heartbeat_conflict(emulators: Emulators, world: World,
                                                     tmp_path: Path) -> None:
    alone = start_watch(emulators, world, tmp_path / "alone.log", "--settle", "0s")
    try:
        alone.wait_ready()

        def beat() -> float:
            return metric(alone.get("/metrics").text,
                          "reel_reconciler_listener_last_event_timestamp_seconds",
                          listener="heartbeat")

        first = wait_for(beat, 10, "the first heartbeat")
        wait_for(lambda: beat() > first, 10, "a heartbeat after the first")  # every 5 s
        text = alone.get("/metrics").text
        assert metric(text, "reel_reconciler_heartbeat_conflicts_total") == 0
        assert alone.get("/livez").status_code == 200
    finally:
        alone.terminate()


@contextmanager
def runtime_with(world: World, hooks: Hooks) -> Iterator[tuple[ReconcilerRuntime, int]]:
    """A runtime as `watch` runs one, with its server, on a loop of its own; a fast watchdog
    (0.2 s beats, 1 s timeouts), so that its liveness tolerance is a few seconds."""
    spec = ReconcilerSpec.parse({
        "firestore": {"projectsCollection": world.projects_collection,
                      "jobsCollection": world.jobs_collection},
        "storage": {"bucket": world.bucket}, "settle": "0s",
        "listeners": {"heartbeatInterval": "200ms", "silenceThreshold": "5s"}})
    settings = settings_for(world, request_timeout=1.0, retry_deadline=1.0)
    runtime = ReconcilerRuntime(ReconcilerId("liveness", "test"), spec, settings=settings,
                                hooks=hooks)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port()
    server = asyncio.run_coroutine_threadsafe(start_server(port, "127.0.0.1"), loop).result(30)
    asyncio.run_coroutine_threadsafe(runtime.start(), loop).result(bound(60))
    try:
        yield runtime, port
    finally:
        asyncio.run_coroutine_threadsafe(runtime.stop(), loop).result(bound(60))
        asyncio.run_coroutine_threadsafe(server.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_hung_watchdog_timer_fails_liveness(world: World) -> None:
    """The watchdog's hook never returns, as a hung status write would: the timer stops
    turning, and /livez turns 503 once its tolerance passes; a stop forgets the loop."""
    turning = threading.Event()
    turning.set()

    async def on_tick(_: str | None) -> None:
        await asyncio.to_thread(turning.wait)  # returns at once while the timer turns

    def livez(port: int) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{port}/livez", timeout=5)

    with runtime_with(world, Hooks(on_tick=on_tick)) as (_, port):
        holds(lambda: livez(port).status_code == 200 and not stalled(), 1,
              "/livez while the watchdog turns")
        turning.clear()
        hung = wait_for(lambda: livez(port).json()["stalled"], 30,
                        "/livez to fail while the watchdog hangs")
        assert livez(port).status_code == 503
        assert any("test/liveness watchdog" in line for line in hung), hung
        turning.set()
        wait_for(lambda: livez(port).status_code == 200, 30,
                 "/livez to recover once the watchdog turns again")
    assert not stalled(), "a stopped runtime's loop is no longer watched"


def test_a_runtime_shows_itself_running_until_it_stops(world: World) -> None:
    """`watch` has no supervisor: the runtime itself exports running (and wanted) once it
    runs, and running 0 from its stop on, so that ReelReconcilerNotRunning sees it too."""
    with runtime_with(world, Hooks()) as (runtime, port):
        label = runtime.label
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert f'reel_reconciler_running{{reconciler="{label}"}} 1.0' in text
        assert f'reel_reconciler_wanted{{reconciler="{label}"}} 1.0' in text
    text = generate_latest().decode()
    assert f'reel_reconciler_running{{reconciler="{label}"}} 0.0' in text
    assert f'reel_reconciler_wanted{{reconciler="{label}"}} 1.0' in text
