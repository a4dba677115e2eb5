"""The two stores in memory, for the engine's fast unit tests: same contract as the adapters
(`reel_reconciler.engine.stores`), every write checked against its precondition as Firestore
checks it. The emulator tests keep proving the adapters themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from reel_reconciler import metrics
from reel_reconciler.model import ObjectInfo
from reel_reconciler.stores import Conflict, Outage, RequestLog
from reel_reconciler.stores.firestore import Document
from tests.support.recording import TESTS

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


class MemoryProjects:
    """Projects and jobs by id; each write gets a new update time, as Firestore gives one."""

    def __init__(self) -> None:
        self.requests = RequestLog("firestore", metrics.FIRESTORE_REQUESTS_TOTAL, TESTS)
        self.projects: dict[str, Document] = {}
        self.jobs: dict[str, Document] = {}
        self.writes: list[tuple[str, dict[str, Any]]] = []
        """Our writes that applied: (project id, fields)."""
        self.down = False
        """Every call fails as an unreachable Firestore does."""
        self.before_commit: Callable[[], None] | None = None
        """Runs before each of our writes: another writer's moment."""
        self.breakers: dict[str, Document] = {}
        self._ticks = 0

    def _tick(self) -> datetime:
        self._ticks += 1
        return EPOCH + timedelta(microseconds=self._ticks)

    def put_project(self, project_id: str, data: Mapping[str, Any]) -> None:
        """The app's blind write (no precondition)."""
        self.projects[project_id] = Document(project_id, dict(data), self._tick())

    def put_job(self, job_id: str, data: Mapping[str, Any]) -> None:
        self.jobs[job_id] = Document(job_id, dict(data), self._tick())

    def _call(self, op: str, what: str) -> None:
        if self.down:
            self.requests.count(op, "unavailable")
            raise Outage(f"firestore unreachable during {op} {what}: memory store down")
        self.requests.count(op)

    def get_projects(self, project_ids: Sequence[str]) -> dict[str, Document]:
        self._call("get_projects", f"{len(project_ids)} projects")
        return {i: self.projects[i] for i in project_ids if i in self.projects}

    def jobs_of_projects(self, project_ids: Sequence[str]) -> dict[str, list[Document]]:
        self._call("query_jobs", f"{len(project_ids)} projects")
        found: dict[str, list[Document]] = {i: [] for i in project_ids}
        for job in sorted(self.jobs.values(), key=lambda doc: doc.id):
            owner = (job.data or {}).get("projectId")
            if owner in found:
                found[owner].append(job)
        return found

    def _check(self, project_id: str, read_update_time: datetime) -> None:
        current = self.projects.get(project_id)
        if current is None or current.update_time != read_update_time:
            raise Conflict(f"firestore update {project_id}: precondition failed")

    def _write(self, project_id: str, fields: Mapping[str, Any]) -> datetime:
        data = dict(self.projects[project_id].data or {})
        data.update(fields)
        written = self._tick()
        self.projects[project_id] = Document(project_id, data, written)
        self.writes.append((project_id, dict(fields)))
        return written

    def update_project(self, project_id: str, fields: Mapping[str, Any],
                       read_update_time: datetime) -> datetime:
        if self.before_commit is not None:
            self.before_commit()
        self._call("update_project", project_id)
        self._check(project_id, read_update_time)
        return self._write(project_id, fields)

    def update_projects(self, updates: Mapping[str, tuple[Mapping[str, Any], datetime]]
                        ) -> dict[str, datetime]:
        if self.before_commit is not None:
            self.before_commit()
        self._call("update_projects", f"{len(updates)} projects")
        for project_id, (_, read_update_time) in updates.items():
            self._check(project_id, read_update_time)
        return {project_id: self._write(project_id, fields)
                for project_id, (fields, _) in updates.items()}

    def breaker(self, collection: str, name: str) -> Document | None:
        self._call("get_breaker", name)
        return self.breakers.get(f"{collection}/{name}")

    def put_breaker(self, collection: str, name: str, fields: Mapping[str, Any],
                    read_update_time: datetime | None) -> datetime:
        self._call("put_breaker", name)
        key = f"{collection}/{name}"
        current = self.breakers.get(key)
        if (current.update_time if current is not None else None) != read_update_time:
            raise Conflict(f"firestore put_breaker {name}: precondition failed")
        written = self._tick()
        self.breakers[key] = Document(name, {**(current.data or {} if current else {}),
                                             **fields}, written)
        return written


class MemoryObjects:
    """A bucket's objects by name; a listing can be slowed down or fail as an outage."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.requests = RequestLog("gcs", metrics.GCS_REQUESTS_TOTAL, TESTS)
        self.objects: dict[str, ObjectInfo] = {}
        for name in names:
            self.put(name)
        self.down = False
        self.slow: dict[str, float] = {}
        """Seconds a listing of a prefix takes."""

    def put(self, name: str) -> None:
        """An object written by the app's worker, a day before the tests' clock."""
        self.objects[name] = ObjectInfo(name, 1000, EPOCH)

    def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        if self.down:
            self.requests.count("list", "unavailable")
            raise Outage(f"gcs unreachable during list {prefix}: memory store down")
        self.requests.count("list")
        time.sleep(self.slow.get(prefix, 0.0))
        return [obj for name, obj in sorted(self.objects.items()) if name.startswith(prefix)]

    def any_under(self, prefix: str) -> bool:
        self.requests.count("list")
        return any(name.startswith(prefix) for name in self.objects)

    def stat(self, name: str) -> ObjectInfo | None:
        self.requests.count("get_metadata")
        return self.objects.get(name)
