"""Outages mid-run, provoked for real: the emulator process is stopped while the CLI sweeps.

Each test runs its own emulator instance so that stopping it cannot disturb other tests.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.emulators import Emulator, Emulators, firestore_emulator
from devkit.seed import World
from tests.conftest import REPO
from tests.support.patience import bound

READY = 40
PIPE_BYTES = 4096
STUCK = 5


def _seed(world: World) -> None:
    """Ready projects first (a D2 bug would downgrade them), stuck ones last in id order.

    One user per project: the sweep streams users in order, so its reads of both stores go on
    while it reconciles, and the outage lands in the middle of them.
    """
    for i in range(READY):
        world.generated_project(f"a-ready-{i:03d}", user=f"a-user-{i:03d}", status="ready",
                                prompts=2, in_gcs=2, in_db=2)
    for i in range(STUCK):
        world.generated_project(f"z-stuck-{i:03d}", user=f"z-user-{i:03d}",
                                status="generating", prompts=2, in_gcs=2, in_db=0,
                                job_status="failed")


def _sweep_and_stop(env: dict[str, str], victim: Emulator) -> tuple[int, dict[str, Any],
                                                                   float]:
    """Start a sweep, stop `victim` once it has reconciled a few projects, time the exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reel_reconciler.cli", "sweep", "--output", "json", "--concurrency",
         "1", "--page-size", "5", "--gcs-page-size", "2", "--log-level", "DEBUG",
         "--log-format", "json",
         "--retry-deadline", "10", "--request-timeout", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stderr is not None
    # A pipe of one page: the sweep can log only a few projects ahead of this reader, so a
    # test process slowed by a loaded host cannot find the sweep already finished.
    fcntl.fcntl(proc.stderr.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    seen = 0
    for line in proc.stderr:
        if '"message": "reconciled"' in line:
            seen += 1
            if seen == 3:
                break
    assert seen == 3, "the sweep never got going"
    # Paused while the server dies, so the outage lands mid-sweep however fast the rest is.
    proc.send_signal(signal.SIGSTOP)
    victim.stop(crash=True)
    stopped = time.monotonic()
    proc.send_signal(signal.SIGCONT)
    try:
        out, _ = proc.communicate(timeout=bound(60))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # every thread's stack, to stderr
        time.sleep(1)
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the sweep went on {bound(60):.0f}s after the outage; its "
                             f"threads and last logs:\n{err[-12000:]}") from None
    return proc.returncode, json.loads(out), time.monotonic() - stopped


@pytest.fixture
def own_firestore(emulators: Emulators, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    fs = firestore_emulator(tmp_path)
    fs.start()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", fs.host)
    yield Emulators(fs, emulators.gcs, emulators.gcp_project)
    fs.stop()


def test_gcs_outage_mid_sweep_writes_nothing_and_exits_1_within_30s(
        own_gcs: Emulators) -> None:
    world = World.create(own_gcs.gcp_project)
    _seed(world)
    before = {d.id: d.update_time for d in world.projects().stream()}
    env = {**os.environ, **own_gcs.env(), "REEL_BUCKET": world.bucket}
    code, body, seconds = _sweep_and_stop(env, own_gcs.gcs)
    assert code == 1
    assert seconds < bound(30), f"outage took {seconds:.1f}s to report"
    assert "gcs unreachable" in str(body["aborted"])
    errors = [r for r in body["reports"] if r["action"] == "error"]
    assert errors
    assert all(r.get("unreachable") for r in errors)
    after = {d.id: d.update_time for d in world.projects().stream()}
    assert after == before, "a document was written during a storage outage"
    assert body["scanned"] < READY + STUCK


def test_firestore_outage_mid_sweep_exits_1_within_30s(own_firestore: Emulators) -> None:
    world = World.create(own_firestore.gcp_project)
    _seed(world)
    env = {**os.environ, **own_firestore.env(), "REEL_BUCKET": world.bucket}
    code, body, seconds = _sweep_and_stop(env, own_firestore.firestore)
    assert code == 1
    assert seconds < bound(30), f"outage took {seconds:.1f}s to report"
    assert "firestore unreachable" in str(body["aborted"])
