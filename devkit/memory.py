"""The two stores in memory, for the engine's fast unit tests and the scale bench: same
contract as the adapters (`reel_reconciler.engine.stores`), every write checked against its
precondition as Firestore checks it. The emulator tests keep proving the adapters themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from reel_reconciler import metrics
from reel_reconciler.model import ObjectInfo, ReconcilerId
from reel_reconciler.stores import Conflict, Outage, RequestLog
from reel_reconciler.stores.billing import (
    OTHER,
    SWEEP,
    count_billed_reads,
    current_pass,
    reading_for,
)
from reel_reconciler.stores.firestore import IN_LIMIT, JOB_SERVER_TIME, Document, failed_job

TESTS = ReconcilerId("test")
"""Whose request counters the stand-ins add to: the tests' reconciler."""

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

    def _billed(self, documents: int, default: str = OTHER) -> None:
        """Documents read as Firestore bills them: a query or read that found none costs one."""
        self.requests.billed.documents(max(documents, 1), current_pass(default))

    def get_projects(self, project_ids: Sequence[str]) -> dict[str, Document]:
        self._call("get_projects", f"{len(project_ids)} projects")
        self._billed(len(set(project_ids)))
        return {i: self.projects[i] for i in project_ids if i in self.projects}

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Document]:
        self._call("get_jobs", f"{len(job_ids)} jobs")
        self._billed(len(set(job_ids)))
        return {i: self.jobs[i] for i in job_ids if i in self.jobs}

    def jobs_of_projects(self, project_ids: Sequence[str]) -> dict[str, list[Document]]:
        self._call("query_jobs", f"{len(project_ids)} projects")
        found: dict[str, list[Document]] = {i: [] for i in project_ids}
        for job in sorted(self.jobs.values(), key=lambda doc: doc.id):
            owner = (job.data or {}).get("projectId")
            if owner in found:
                found[owner].append(job)
        ids = list(found)
        for start in range(0, len(ids), IN_LIMIT):  # one query per IN_LIMIT projects
            self._billed(sum(len(found[i]) for i in ids[start:start + IN_LIMIT]))
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

    def fail_job(self, job_id: str, message: str, read_update_time: datetime) -> datetime:
        """A stale job failed, only over the version read; its server times are the write's."""
        self._call("fail_job", job_id)
        current = self.jobs.get(job_id)
        if current is None or current.update_time != read_update_time:
            raise Conflict(f"firestore fail_job {job_id}: precondition failed")
        written = self._tick()
        stamps = dict.fromkeys(JOB_SERVER_TIME, written)
        self.jobs[job_id] = Document(job_id, {**(current.data or {}), **failed_job(message),
                                              **stamps}, written)
        return written

    def breaker(self, collection: str, name: str) -> Document | None:
        self._call("get_breaker", name)
        self._billed(1)
        return self.breakers.get(f"{collection}/{name}")

    def own_document(self, collection: str, name: str, op: str,
                     fields: Sequence[str] | None = None) -> Document | None:
        self._call(op, name)
        found = self.breakers.get(f"{collection}/{name}")
        if found is None or fields is None:
            return found
        data = found.data or {}
        return Document(found.id, {key: data[key] for key in fields if key in data},
                        found.update_time)

    def put_own_document(self, collection: str, name: str, fields: Mapping[str, Any],
                         read_update_time: datetime | None, op: str) -> datetime:
        return self._put(collection, name, fields, read_update_time, op)

    def put_breaker(self, collection: str, name: str, fields: Mapping[str, Any],
                    read_update_time: datetime | None) -> datetime:
        return self._put(collection, name, fields, read_update_time, "put_breaker")

    def _put(self, collection: str, name: str, fields: Mapping[str, Any],
             read_update_time: datetime | None, op: str) -> datetime:
        self._call(op, name)
        key = f"{collection}/{name}"
        current = self.breakers.get(key)
        if (current.update_time if current is not None else None) != read_update_time:
            raise Conflict(f"firestore {op} {name}: precondition failed")
        written = self._tick()
        self.breakers[key] = Document(name, {**(current.data or {} if current else {}),
                                             **fields}, written)
        return written


class MemoryObjects:
    """A bucket's objects by name; a listing can be slowed down or fail as an outage."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.requests = RequestLog("gcs", metrics.GCS_REQUESTS_TOTAL, TESTS)
        self.objects: dict[str, ObjectInfo] = {}
        self._generation = 0
        for name in names:
            self.put(name)
        self.down = False
        self.slow: dict[str, float] = {}
        """Seconds a listing of a prefix takes."""

    def put(self, name: str) -> None:
        """An object written by the app's worker, a day before the tests' clock; each write
        is a new generation, as in GCS."""
        self._generation += 1
        self.objects[name] = ObjectInfo(name, 1000, EPOCH, self._generation)

    def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        if self.down:
            self.requests.count("list", "unavailable")
            raise Outage(f"gcs unreachable during list {prefix}: memory store down")
        self.requests.count("list")
        time.sleep(self.slow.get(prefix, 0.0))
        return [self.objects[name] for name in sorted(
            name for name in self.objects if name.startswith(prefix))]

    def any_under(self, prefix: str) -> bool:
        self.requests.count("list")
        return any(name.startswith(prefix) for name in self.objects)

    def stat(self, name: str) -> ObjectInfo | None:
        self.requests.count("get_metadata")
        return self.objects.get(name)


def firestore_order(value: object) -> tuple[int, Any]:
    """Firestore's order of values of mixed types, for the types userIds come in."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value.encode())
    return (4, repr(value))


Latency = Callable[[str], float]
"""Seconds one request of an operation (a page) takes: a benchmark's stand-in for the
network; tests leave it out."""


class StreamingProjects(MemoryProjects):
    """MemoryProjects that also stream, as the sweep reads Firestore: pages in (userId, id)
    order, one counted request each, a userId range matching string userIds only."""

    def __init__(self, latency: Latency | None = None) -> None:
        super().__init__()
        self.latency = latency

    def _wait(self, op: str) -> None:
        if self.latency is not None:
            time.sleep(self.latency(op))

    def _by_user(self, documents: dict[str, Document], op: str, page_size: int,
                 key_range: tuple[str, str | None] | None,
                 fields: Sequence[str] | None) -> Iterator[list[Document]]:
        def inside(doc: Document) -> bool:
            data = doc.data or {}
            if "userId" not in data:
                return False
            if key_range is None:
                return True
            user, (lo, hi) = data["userId"], key_range
            return isinstance(user, str) and lo.encode() <= user.encode() and (
                hi is None or user.encode() < hi.encode())

        ordered = sorted((doc for doc in list(documents.values()) if inside(doc)),
                         key=lambda doc: (firestore_order((doc.data or {})["userId"]), doc.id))
        for start in range(0, len(ordered) + 1, page_size):
            self._wait(op)
            self._call(op, "stream")
            page = [Document(doc.id, {k: v for k, v in (doc.data or {}).items()
                                      if fields is None or k in fields}, doc.update_time)
                    for doc in ordered[start:start + page_size]]
            self.requests.billed.documents(max(len(page), 1), current_pass(SWEEP))
            if page:
                yield page
            if len(page) < page_size:
                return

    def projects_by_user(self, page_size: int, fields: Sequence[str] | None = None,
                         key_range: tuple[str, str | None] | None = None
                         ) -> Iterator[list[Document]]:
        return self._by_user(self.projects, "stream_projects", page_size, key_range, fields)

    def jobs_by_user(self, page_size: int, fields: Sequence[str],
                     key_range: tuple[str, str | None] | None = None
                     ) -> Iterator[list[Document]]:
        return self._by_user(self.jobs, "stream_jobs", page_size, key_range, fields)

    def active_jobs(self) -> list[Document]:
        self._wait("query_active_jobs")
        self._call("query_active_jobs", "jobs")
        active = [doc for doc in self.jobs.values()
                  if (doc.data or {}).get("status") in ("queued", "processing")]
        self._billed(len(active), SWEEP)
        return active

    def _of_users(self, documents: dict[str, Document], users: Sequence[str],
                  fields: Sequence[str] | None, op: str) -> list[Document]:
        found: list[Document] = []
        ids = list(dict.fromkeys(users))
        for start in range(0, len(ids), 30):
            chunk = set(ids[start:start + 30])
            self._wait(op)
            self._call(op, f"{len(chunk)} users")
            found += [Document(doc.id, {k: v for k, v in (doc.data or {}).items()
                                        if fields is None or k in fields}, doc.update_time)
                      for doc in sorted(documents.values(), key=lambda doc: doc.id)
                      if (doc.data or {}).get("userId") in chunk]
        return found

    def projects_of_users(self, users: Sequence[str], fields: Sequence[str] | None = None
                          ) -> list[Document]:
        return self._of_users(self.projects, users, fields, "query_user_projects")

    def jobs_of_users(self, users: Sequence[str], fields: Sequence[str]) -> list[Document]:
        return self._of_users(self.jobs, users, fields, "query_user_jobs")

    def count_by_status(self, statuses: Sequence[str]) -> dict[str, int]:
        found = {status: 0 for status in statuses}
        for status in statuses:
            self._wait("count_status")
            self._call("count_status", status)
        for doc in self.projects.values():
            value = (doc.data or {}).get("status")
            if isinstance(value, str) and value in found:
                found[value] += 1
        return found

    def projects_not_at_rest(self) -> list[str]:
        self._wait("query_not_at_rest")
        self._call("query_not_at_rest", "projects")
        return sorted(project_id for project_id, doc in self.projects.items()
                      if (doc.data or {}).get("status") in ("generating", "stitching"))

    def count_projects(self) -> int:
        self._wait("count_projects")
        self._call("count_projects", "projects")
        self.requests.billed.documents(count_billed_reads(len(self.projects)),
                                       current_pass(SWEEP))
        return len(self.projects)

    def projects_without_user(self, page_size: int, strings_only: bool = False
                              ) -> Iterator[str]:
        del page_size  # ids come from memory, not in pages
        self._billed(len(self.projects), SWEEP)  # Firestore reads each one's userId
        for project_id in sorted(self.projects):
            data = self.projects[project_id].data or {}
            if "userId" not in data or (strings_only and not isinstance(data["userId"], str)):
                yield project_id


class StreamingObjects(MemoryObjects):
    """MemoryObjects that also list in pages between two names, as GCS does with a prefix,
    startOffset and endOffset."""

    def __init__(self, names: Sequence[str] = (), latency: Latency | None = None,
                 page_size: int = 1000) -> None:
        super().__init__(names)
        self.latency = latency
        self.page_size = page_size

    def listing(self, prefix: str, start: str | None = None,
                end: str | None = None) -> Iterator[list[ObjectInfo]]:
        names = sorted(name for name in self.objects if name.startswith(prefix)
                       and (start is None or name.encode() >= start.encode())
                       and (end is None or name.encode() < end.encode()))
        trigger = current_pass(SWEEP)
        for first in range(0, max(len(names), 1), self.page_size):
            if self.latency is not None:
                time.sleep(self.latency("list"))
            with reading_for(trigger):
                if self.down:
                    self.requests.count("list", "unavailable")
                    raise Outage(f"gcs unreachable during list {prefix}: memory store down")
                self.requests.count("list")
            yield [self.objects[name] for name in names[first:first + self.page_size]]
