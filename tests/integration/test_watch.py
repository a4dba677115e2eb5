"""`reel-reconciler watch` as a user runs it: a process against the real emulators, healing
projects through its listeners and its sweep timer, serving /metrics and /readyz, and
draining on SIGTERM."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devkit.emulators import Emulators, free_port
from devkit.seed import World
from tests.support.harness import metric, wait_for
from tests.support.patience import bound
from tests.support.watching import Watch, start_watch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def watch(emulators: Emulators, world: World, tmp_path: Path) -> Iterator[Watch]:
    running = start_watch(emulators, world, tmp_path / "watch.log", "--settle", "0s",
                          "--sweep-interval", "3s", "--stale-interval", "1h")
    try:
        running.wait_ready()
        yield running
    finally:
        running.kill()


def test_watch_heals_through_listener_and_sweep_then_drains(watch: Watch, world: World) -> None:
    # Written after it started, stuck: the projects listener sees it.
    _, stuck = world.generated_project("p-7f3a", status="generating", prompts=3, in_gcs=3,
                                       in_db=0, job_status="failed")
    wait_for(lambda: world.project("p-7f3a")["status"] == "ready", 15,
             lambda: f"the listener to heal the stuck project\n{watch.logs()}")
    assert world.project("p-7f3a")["clipFilenames"] == stuck
    # A ready project is not listened to: only the sweep finds the clip deleted behind it.
    _, paths = world.generated_project("p-behind", status="ready", prompts=2, in_gcs=2, in_db=2)
    world.delete_object(paths[1])
    wait_for(lambda: world.project("p-behind")["status"] == "draft", 20,
             lambda: f"the sweep to find the deleted clip\n{watch.logs()}")
    text = watch.get("/metrics").text
    assert metric(text, "reel_reconciler_reconcile_total", trigger="listener",
                  action="corrected") >= 1
    assert metric(text, "reel_reconciler_reconcile_total", trigger="sweep",
                  action="corrected") >= 1
    assert "p-7f3a" not in text, "ids must never be metric labels"
    assert "p-behind" not in text, "ids must never be metric labels"
    code, seconds = watch.terminate()
    assert code == 0, watch.logs()
    assert seconds < bound(10), watch.logs()
    assert '"stopped"' in watch.logs()


def test_observe_mode_writes_nothing(emulators: Emulators, world: World, tmp_path: Path) -> None:
    world.generated_project("stuck", status="generating", prompts=2, in_gcs=2, in_db=0,
                            job_status="failed")
    before = world.update_time("stuck")
    running = start_watch(emulators, world, tmp_path / "observe.log", "--settle", "0s",
                          "--sweep-interval", "1s", "--mode", "Observe")
    try:
        wait_for(lambda: metric(running.get("/metrics").text, "reel_reconciler_reconcile_total",
                                trigger="sweep", action="drift") >= 1 if running.ready()
                 else False, 30, lambda: f"a sweep reporting drift\n{running.logs()}")
    finally:
        code, _ = running.terminate()
    assert code == 0
    assert world.update_time("stuck") == before


def test_port_in_use_is_one_line_and_exit_2(emulators: Emulators, world: World,
                                            tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        running = start_watch(emulators, world, tmp_path / "busy.log", port=port)
        code = running.proc.wait(bound(30))
    output = running.log.read_text().strip().splitlines()
    assert code == 2
    assert len(output) == 1
    assert str(port) in output[0]
    assert "--metrics-port" in output[0]


def test_unreachable_firestore_is_one_line_and_exit_2(emulators: Emulators,
                                                      world: World) -> None:
    dead: dict[str, Any] = {"FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{free_port()}"}
    env = {**os.environ, **emulators.env(), "REEL_BUCKET": world.bucket,
           "REEL_RETRY_DEADLINE": "2", "REEL_REQUEST_TIMEOUT": "2", **dead}
    done = subprocess.run([sys.executable, "-m", "reel_reconciler.cli", "watch", "--metrics-port",
                           str(free_port())], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "FIRESTORE_EMULATOR_HOST" in lines[0], done.stderr


def test_not_ready_before_its_reconciler_runs(emulators: Emulators, world: World,
                                              tmp_path: Path) -> None:
    """/readyz answers while the start-up still probes Firestore (unreachable here, retried
    for a while): it must say not ready, or a test or a Service would send work too early."""
    running = start_watch(emulators, world, tmp_path / "starting.log", env={
        "REEL_RETRY_DEADLINE": "30", "REEL_REQUEST_TIMEOUT": "2",
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{free_port()}"})
    try:
        answer: list[requests.Response] = []

        def answered() -> bool:
            try:
                answer.append(running.get("/readyz"))
            except requests.ConnectionError:
                return False
            return True

        wait_for(lambda: running.proc.poll() is None and answered(), 20,
                 lambda: f"/readyz to answer\n{running.logs()}")
        assert answer[-1].status_code == 503, answer[-1].text
        assert answer[-1].json()["reconcilers"] == 0
    finally:
        running.kill()
