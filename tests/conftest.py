"""Session fixtures: Google's Firestore and Pub/Sub emulators and fake-gcs-server, started
for real.

A missing prerequisite fails the tests that need it, with a message naming what to
install; nothing is skipped silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.emulators import (
    FIREBASE_PROJECT,
    Emulator,
    Emulators,
    MissingPrerequisite,
    fake_gcs_server,
    firebase_auth_emulator,
    pubsub_emulator,
    running_emulators,
)
from devkit.notifications import Notifications
from devkit.seed import World
from reel_reconciler.config import Settings
from reel_reconciler.engine import Engine
from reel_reconciler.stores.firestore import FirestoreStore
from reel_reconciler.stores.gcs import GcsStore
from tests.support.patience import bound
from tests.support.recording import TESTS

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    try:
        with running_emulators(tmp_path_factory.mktemp("emulators")) as running:
            yield running
    except MissingPrerequisite as exc:
        pytest.fail(f"missing prerequisite: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """Google's Pub/Sub emulator, for GCS object notifications."""
    try:
        emulator = pubsub_emulator(tmp_path_factory.mktemp("pubsub"))
    except MissingPrerequisite as exc:
        pytest.fail(str(exc), pytrace=False)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def auth_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The Firebase Auth emulator for the demo project, for a module's users."""
    try:
        emulator = firebase_auth_emulator(tmp_path_factory.mktemp("firebase"), FIREBASE_PROJECT)
    except MissingPrerequisite as exc:
        pytest.fail(str(exc), pytrace=False)
    emulator.start(timeout=bound(60))
    yield emulator
    emulator.stop()


@pytest.fixture
def notified(emulators: Emulators, pubsub: Emulator, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[World, Notifications]]:
    """A world whose storage publishes its changes: a fake-gcs-server of its own sending
    finalize and delete events to a fresh topic, and a subscription on it."""
    suffix = uuid.uuid4().hex[:8]
    notes = Notifications(pubsub, emulators.gcp_project, f"objects-{suffix}",
                          f"reel-{suffix}")
    notes.create_topic()
    notes.create_subscription()
    gcs = fake_gcs_server(tmp_path, events=(pubsub, notes.project, notes.topic))
    gcs.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{gcs.host}")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub.host)
    emulators.reset_firestore()
    try:
        yield World.create(emulators.gcp_project), notes
    finally:
        gcs.stop()


@pytest.fixture
def own_gcs(emulators: Emulators, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    gcs = fake_gcs_server(tmp_path)
    gcs.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{gcs.host}")
    emulators.reset_firestore()
    yield Emulators(emulators.firestore, gcs, emulators.gcp_project)
    gcs.stop()


@pytest.fixture
def world(emulators: Emulators) -> World:
    """Empty Firestore and a fresh bucket for each test."""
    emulators.reset_firestore()
    return World.create(emulators.gcp_project)


def settings_for(world: World, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bucket": world.bucket, "projects_collection": world.projects_collection,
        "jobs_collection": world.jobs_collection, "root_prefix": world.root_prefix,
        "settle": "0s", "retry_deadline": 5.0, "request_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_engine(world: World) -> Callable[..., Engine]:
    def make(gcs: GcsStore | None = None, **overrides: Any) -> Engine:
        settings = settings_for(world, **overrides)
        return Engine(settings, FirestoreStore(settings, TESTS), gcs or GcsStore(settings, TESTS),
                      TESTS)
    return make


@pytest.fixture
def cli(emulators: Emulators, world: World) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed console script against the emulators, as a user would. The data a
    test seeds was written a moment ago: the settle window is 0 s unless a test sets it."""
    def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **emulators.env(), "REEL_BUCKET": world.bucket,
                    "REEL_SETTLE": "0s", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "reel_reconciler.cli", *args], capture_output=True, text=True,
            timeout=timeout, env=full_env, cwd=REPO, check=False)
    return run
