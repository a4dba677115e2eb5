"""Many drifted projects, fast, and when we wrote them: for the tests that stop a reconciler
in the middle of a sweep and look for writes that came too late."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from devkit.emulators import Emulators, running_emulators
from devkit.seed import World

PER_USER = 10
WRITERS = 4


@pytest.fixture(scope="module", name="emulators")
def emulators_of_their_own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    """For a module that seeds thousands of documents (import it there): after such
    data the shared Firestore emulator was seen to report new listen targets late for the
    rest of the session (tests/integration/test_listeners.py failed after them, never alone)."""
    with running_emulators(tmp_path_factory.mktemp("heavy-emulators")) as running:
        yield running


UNBRAKED = 100_000
"""The breaker's largest budget: tests of stopping measure corrections, not the brake."""


def seed_drifted(world: World, count: int,
                 user_of: Callable[[int], str] | None = None) -> None:
    """`ready` projects each claiming a clip that is not in the bucket: every one is a
    correction for a sweep (the listeners' start leaves `ready` projects alone). `user_of`
    names the owner of the i-th project (default: `PER_USER` consecutive ones per user)."""
    ids = [f"p{i:06d}" for i in range(count)]
    chunks = [ids[i:i + 500] for i in range(0, count, 500)]
    lock = threading.Lock()
    failures: list[BaseException] = []

    def writer() -> None:
        while True:
            with lock:
                if not chunks:
                    return
                chunk = chunks.pop()
            batch = world.db.batch()
            for project_id in chunk:
                user = (user_of or _user)(int(project_id[1:]))
                batch.set(world.projects().document(project_id), {
                    "userId": user, "title": "drifted", "status": "ready",
                    "promptList": ["a"], "durationSeconds": 8,
                    "clipFilenames": [world.clip_path(user, project_id, "reeljob-0", 0)]})
            try:
                batch.commit(timeout=120)
            except Exception as exc:  # surfaced below, in the test's thread
                failures.append(exc)
                return

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    # Something under the root, as in any bucket the app uses: an empty one would trip the
    # breaker before the first correction (tests/integration/test_breaker_emulators.py).
    world.put_object(f"{world.root_prefix}/someone-else/elsewhere/raw/reeljob-0/prompt-00/c.mp4")


def _user(index: int) -> str:
    return f"user-{index // PER_USER:05d}"


def written_times(world: World) -> list[datetime]:
    """When each project we corrected was written (ours carry lastReconciliation)."""
    found = []
    for snap in world.projects().select(["lastReconciliation"]).stream():
        if (snap.to_dict() or {}).get("lastReconciliation") and snap.update_time is not None:
            found.append(snap.update_time)
    return found
