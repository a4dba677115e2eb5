"""Stores that remember what the controller wrote, so a race test can count our writes.

They observe the real store's writes (after they succeed); nothing is faked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from devkit.memory import TESTS as TESTS
from reel_reconciler.config import Settings
from reel_reconciler.engine import Engine
from reel_reconciler.model import ReconcilerId
from reel_reconciler.stores.firestore import FirestoreStore
from reel_reconciler.stores.gcs import GcsStore

"""Who the tests' engines reconcile as, unless a test names one of its own."""


class RecordingFirestore(FirestoreStore):
    """A FirestoreStore that records each project write it made, with its fields."""

    def __init__(self, settings: Settings, reconciler: ReconcilerId) -> None:
        super().__init__(settings, reconciler)
        self.writes: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _record(self, project_id: str, fields: Mapping[str, Any]) -> None:
        with self._lock:
            self.writes.append((time.monotonic(), project_id, dict(fields)))

    def update_project(self, project_id: str, fields: Mapping[str, Any],
                       read_update_time: datetime) -> datetime:
        written = super().update_project(project_id, fields, read_update_time)
        self._record(project_id, fields)
        return written

    def update_projects(self, updates: Mapping[str, tuple[Mapping[str, Any], datetime]]
                        ) -> dict[str, datetime]:
        written = super().update_projects(updates)
        for project_id, (fields, _) in updates.items():
            self._record(project_id, fields)
        return written

    def written(self, project_id: str, since: float = 0.0) -> list[dict[str, Any]]:
        """The fields of every write to `project_id` after `since` (time.monotonic())."""
        with self._lock:
            return [fields for at, pid, fields in self.writes if pid == project_id and at >= since]


def recording_engine(settings: Settings, reconciler: ReconcilerId = TESTS) -> Engine:
    """An engine whose Firestore writes are recorded (a runtime's connector, too)."""
    return Engine(settings, RecordingFirestore(settings, reconciler),
                  GcsStore(settings, reconciler), reconciler=reconciler)
