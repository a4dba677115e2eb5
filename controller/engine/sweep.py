"""Sweep: every project once, joined in one pass with the bucket listing and the jobs.

A sweep runs all day over every project, so it reads each store as a stream instead of asking
per project: the projects and the jobs ordered by userId, the bucket listed once under the root
prefix in name order (pages of up to 1,000 objects). The three are merged one user at a time:
a user's folder `{root}/{userId}/` is one contiguous run of the listing. GCS orders names by
bytes, so `ab-c/` and `ab.c/` sort before `ab/` while Firestore puts `ab` first:
`in_folder_order` reorders the user groups into the order of their folders. Memory holds a
page of each stream and the users in flight, never the bucket or the collection.

The projects then go, a user at a time, through `Engine.reconcile_read`, as a burst of
listener events does, with the streamed reads as their first observation: same policy, same
reports, the same precondition on every write, and a user's corrections in one commit.
Whatever the streams cannot vouch for is read per project, as before: a user
whose folder the listing had already passed (an ordering surprise), claims outside the
project's prefix, documents without a usable userId, and every retry after a conflict.

Jobs are joined on (userId, projectId), as the app writes them; every queued or processing
job is also read by status, after the jobs stream has started and before the projects stream
does (an index-less emulator sorts a whole collection before a stream's first document, and
a query that runs beside flowing streams waits for them), so a job filed under another user
still holds its project. The count of projects, which tells whether some lack a userId and
were not streamed, is read once the streams flow. One failure never stops a sweep, but an
outage does: the rest would fail the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from controller import metrics
from controller.engine.reconcile import Engine, Prefetched, store_failure
from controller.model import PROJECT_STATUSES, Action, ObjectInfo, Report, Trigger
from controller.stores import Outage, StoreError
from controller.stores.firestore import Document

log = logging.getLogger(__name__)

T = TypeVar("T")

PROJECT_FIELDS = ("userId", "status", "promptList", "clipFilenames", "stitchedFilename",
                  "errorInfo", "durationSeconds")
"""The project fields the policy reads (controller.model.Project): decoding the others (title,
timestamps, ...) would cost the sweep as much as the reads it saves."""
JOB_FIELDS = ("projectId", "userId", "status", "promptCount", "createdAt", "startedAt",
              "updatedAt", "timedOutAt", "error")
"""The job fields the policy reads (controller.model.Job) plus the join key."""

PREFETCH_DEPTH = 2
"""Pages (or batches) each stream reads ahead of the merge."""


@dataclass
class SweepResult:
    scanned: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    reports: list[Report] = field(default_factory=list)
    """Reports whose action is not no_change, in project id order (none if not kept)."""
    statuses: Counter[str] = field(default_factory=Counter)
    gcs_requests: int = 0
    firestore_requests: int = 0
    duration_seconds: float = 0.0
    aborted: str | None = None
    dry_run: bool = False

    @property
    def failed(self) -> bool:
        return self.aborted is not None or self.actions[Action.ERROR.value] > 0

    @property
    def drifted(self) -> int:
        return self.actions[Action.CORRECTED.value] + self.actions[Action.DRIFT.value]

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "scanned": self.scanned,
            "actions": dict(self.actions),
            "reports": [report.as_json() for report in self.reports],
            "gcsRequests": self.gcs_requests,
            "firestoreRequests": self.firestore_requests,
            "durationSeconds": round(self.duration_seconds, 3),
            "dryRun": self.dry_run,
        }
        if self.aborted:
            body["aborted"] = self.aborted
        return body


@dataclass
class UserGroup:
    """Consecutive documents of one userId from a userId-ordered stream."""

    user: str | None
    """The userId if it can name a folder; None for a missing, non-string or unsafe one."""
    documents: list[Document]


def folder_user(value: object) -> str | None:
    """`value` if it is a userId that names exactly one folder `{root}/{value}/`."""
    if not isinstance(value, str) or not value or len(value) > 128 or value in (".", ".."):
        return None
    if any(char in value for char in "/\\\x00"):
        return None
    return value


def user_groups(batches: Iterable[Sequence[Document]]) -> Iterator[UserGroup]:
    """Group a userId-ordered stream of documents by userId, in stream order."""
    current: list[Document] = []
    raw: object = None
    for batch in batches:
        for doc in batch:
            value = doc.data.get("userId") if doc.data else None
            if current and type(value) is type(raw) and value == raw:
                current.append(doc)
                continue
            if current:
                yield UserGroup(folder_user(raw), current)
            current, raw = [doc], value
    if current:
        yield UserGroup(folder_user(raw), current)


def in_folder_order(groups: Iterable[UserGroup]) -> Iterator[UserGroup]:
    """Reorder groups from Firestore's userId order into the byte order of `{userId}/`.

    The two orders differ only where one userId is a prefix of the next and the next
    continues with a byte below "/" (`ab` < `ab-c`, but `ab-c/` < `ab/`). Such a group is held
    until a userId comes whose folder sorts after it; the held groups form a chain of
    prefixes, so memory holds a few users, not a page of them. Groups without a folder pass
    straight through: nothing in the listing belongs to them.
    """
    held: list[UserGroup] = []
    for group in groups:
        if group.user is None:
            yield group
            continue
        key = group.user + "/"
        while held and f"{held[-1].user}/" < key:
            yield held.pop()
        held.append(group)
    while held:
        yield held.pop()


class FolderListing:
    """The bucket listing under the root prefix, handed out one user folder at a time.

    Folders must be asked for in name order; objects before the asked folder belong to no
    project of the sweep and are passed over. A folder the listing may already have passed
    gets None, never a partial answer: absence is not inferred from a listing that could not
    have contained the object.
    """

    def __init__(self, pages: Iterable[list[ObjectInfo]]) -> None:
        self._pages = iter(pages)
        self._page: list[ObjectInfo] = []
        self._at = 0
        self._passed: str | None = None
        self._done = False

    def _peek(self) -> ObjectInfo | None:
        while self._at >= len(self._page):
            if self._done:
                return None
            page = next(self._pages, None)
            if page is None:
                self._done = True
                return None
            self._page, self._at = page, 0
        return self._page[self._at]

    def take(self, prefix: str) -> list[ObjectInfo] | None:
        """Every object under `prefix`, or None if the listing has gone past its start."""
        if self._passed is not None and self._passed >= prefix:
            return None
        found: list[ObjectInfo] = []
        while (obj := self._peek()) is not None:
            inside = obj.name.startswith(prefix)
            if not inside and obj.name > prefix:
                break
            self._at += 1
            self._passed = obj.name
            if inside:
                found.append(obj)
        return found


class JobsByUser:
    """The jobs stream, grouped by user in folder order, handed out one user at a time."""

    def __init__(self, groups: Iterable[UserGroup]) -> None:
        self._groups = iter(groups)
        self._next: UserGroup | None = None
        self._passed: str | None = None
        self._done = False

    def _peek(self) -> UserGroup | None:
        while self._next is None and not self._done:
            group = next(self._groups, None)
            if group is None:
                self._done = True
            elif group.user is not None:
                self._next = group
        return self._next

    def take(self, user: str) -> list[Document] | None:
        """The user's jobs, or None if the stream may have passed them (read per project)."""
        key = user + "/"
        if self._passed is not None and self._passed >= key:
            return None
        while (group := self._peek()) is not None:
            group_key = f"{group.user}/"
            if group_key > key:
                break
            self._next = None
            self._passed = group_key
            if group_key == key:
                return group.documents
        return []


_ITEM, _END, _ERROR = range(3)


class Prefetch(Generic[T]):
    """Reads `source` on its own thread, at most `depth` items ahead, so that waiting for one
    store overlaps with work on the others. An item that does not come within `idle` seconds
    is an outage: a server that hangs without closing the connection stops the sweep too."""

    def __init__(self, source: Iterable[T], depth: int, idle: float, what: str) -> None:
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._idle = idle
        self._what = what
        self._last: tuple[int, Any] | None = None
        self._thread = threading.Thread(target=self._pump, args=(source,), daemon=True,
                                        name=f"sweep-{what}")
        self._thread.start()

    def _pump(self, source: Iterable[T]) -> None:
        try:
            for item in source:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, who raises it
            self._put((_ERROR, exc))

    def _put(self, entry: tuple[int, Any]) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._last is None:
            try:
                kind, value = self._queue.get(timeout=self._idle)
            except queue.Empty:
                raise Outage(f"{self._what} gave nothing for {self._idle:.0f}s") from None
            if kind == _ITEM:
                item: T = value
                return item
            self._last = (kind, value)
        kind, value = self._last
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        self._closed.set()


Work = list[tuple[str, Document | None, Prefetched | None]]


class _Sweep:
    """One sweep's state: the streams, the pool's pending work, the result."""

    def __init__(self, engine: Engine, trigger: Trigger, dry_run: bool, result: SweepResult,
                 on_report: Callable[[Report], None] | None, keep_reports: bool) -> None:
        self.engine = engine
        self.keep_reports = keep_reports
        self.trigger = trigger
        self.dry_run = dry_run
        self.result = result
        self.on_report = on_report
        self.stop = threading.Event()
        self.pending: deque[Future[list[Report]]] = deque()
        self.window = engine.settings.concurrency * 2
        self.streams: list[Prefetch[Any]] = []
        settings = engine.settings
        self.idle = settings.request_timeout + settings.retry_deadline + 5.0

    def prefetch(self, source: Iterable[T], what: str) -> Prefetch[T]:
        stream = Prefetch(source, PREFETCH_DEPTH, self.idle, what)
        self.streams.append(stream)
        return stream

    def run(self, pool: ThreadPoolExecutor) -> None:
        firestore, gcs = self.engine.firestore, self.engine.gcs
        batch = self.engine.settings.page_size
        root = self.engine.policy.location.root_prefix + "/"
        listing = FolderListing(self.prefetch(gcs.listing(root), "gcs listing"))
        jobs = JobsByUser(in_folder_order(user_groups(
            self.prefetch(firestore.jobs_by_user(batch, JOB_FIELDS), "firestore jobs stream"))))
        active = _by_project(firestore.active_jobs())
        projects = in_folder_order(user_groups(
            self.prefetch(firestore.projects_by_user(batch, PROJECT_FIELDS),
                          "firestore projects stream")))
        streamed = 0
        counted: Future[int] | None = None
        for group in projects:
            if self.stopped:
                return
            if counted is None:  # once the streams flow: the emulator counts by a scan
                counted = pool.submit(firestore.count_projects)
            streamed += len(group.documents)
            try:
                work = self.work(group, root, listing, jobs, active)
            except StoreError as exc:
                self.fail(group, exc)
                raise
            self.submit(pool, work)
        if self.stopped:
            return
        total = counted.result() if counted is not None else firestore.count_projects()
        if total <= streamed:
            return
        for project_id in firestore.projects_without_user(batch):
            if self.stopped:
                return
            self.submit(pool, [(project_id, None, None)])

    @property
    def stopped(self) -> bool:
        return self.stop.is_set() or self.result.aborted is not None

    def work(self, group: UserGroup, root: str, listing: FolderListing, jobs: JobsByUser,
             active: dict[str, list[Document]]) -> Work:
        """Each project of the group with what the streams read about it."""
        if group.user is None:
            return [(doc.id, doc, None) for doc in group.documents]
        prefix = f"{root}{group.user}/"
        objects = listing.take(prefix)
        job_docs = jobs.take(group.user)
        objects_of: dict[str, list[ObjectInfo]] = defaultdict(list)
        for obj in objects or ():
            project_id, slash, _ = obj.name[len(prefix):].partition("/")
            if slash:
                objects_of[project_id].append(obj)
        jobs_of: dict[str, dict[str, Document]] = defaultdict(dict)
        for doc in job_docs or ():
            owner = doc.data.get("projectId") if doc.data else None
            if isinstance(owner, str):
                jobs_of[owner][doc.id] = doc
        work: Work = []
        for doc in group.documents:
            own: list[Document] | None = None
            if job_docs is not None:
                found = jobs_of.get(doc.id, {})
                for running in active.get(doc.id, ()):
                    found.setdefault(running.id, running)
                own = sorted(found.values(), key=lambda job: job.id)
            listed = objects_of.get(doc.id, []) if objects is not None else None
            work.append((doc.id, doc, Prefetched(jobs=own, objects=listed)))
        return work

    def submit(self, pool: ThreadPoolExecutor, work: Work) -> None:
        if not work:
            return
        self.pending.append(pool.submit(self.reconcile, work))
        while len(self.pending) >= self.window:
            self.collect(self.pending.popleft())

    def reconcile(self, work: Work) -> list[Report]:
        """A user's projects decided on what the streams read, their corrections in one
        commit; a project the streams could not read (no usable userId) reads itself."""
        if self.stop.is_set():
            return []
        engine = self.engine
        read = [item for item in work if item[1] is not None]
        reports = engine.reconcile_read(read, self.trigger, self.dry_run) if read else []
        for project_id, doc, _ in work:
            if doc is None and not self.stop.is_set():
                reports.append(engine.reconcile(project_id, self.trigger, self.dry_run))
        if any(report.unreachable for report in reports):
            self.stop.set()
        return reports

    def fail(self, group: UserGroup, exc: StoreError) -> None:
        """The group's listing or jobs could not be read: each of its projects failed so."""
        reports = [store_failure(doc.id, exc) for doc in group.documents]
        for report in reports:
            self.engine._record(report, self.trigger, 0.0)
        self.add(reports)

    def collect(self, future: Future[list[Report]]) -> None:
        self.add(future.result())

    def add(self, reports: list[Report]) -> None:
        result = self.result
        for report in reports:
            result.scanned += 1
            result.actions[report.action.value] += 1
            result.statuses[report.corrected_status or "unknown"] += 1
            if self.keep_reports and report.action is not Action.NO_CHANGE:
                result.reports.append(report)
            if report.unreachable and result.aborted is None:
                result.aborted = f"stopped early: {report.error}"
            if self.on_report is not None:
                self.on_report(report)

    def drain(self) -> None:
        while self.pending:
            self.collect(self.pending.popleft())

    def close(self) -> None:
        for stream in self.streams:
            stream.close()


def _by_project(documents: Iterable[Document]) -> dict[str, list[Document]]:
    index: dict[str, list[Document]] = defaultdict(list)
    for doc in documents:
        project_id = doc.data.get("projectId") if doc.data else None
        if isinstance(project_id, str):
            index[project_id].append(doc)
    return index


def sweep(engine: Engine, dry_run: bool = False, trigger: Trigger = Trigger.SWEEP,
          on_report: Callable[[Report], None] | None = None,
          keep_reports: bool = True) -> SweepResult:
    """Reconcile every project once, streaming the stores (see the module docstring).

    `keep_reports=False` keeps counts only (`reports` stays empty), so that memory does not
    grow with the drift a sweep finds; `on_report` still sees every report."""
    started = time.monotonic()
    gcs0, fs0 = engine.request_count()
    result = SweepResult(dry_run=dry_run)
    state = _Sweep(engine, trigger, dry_run, result, on_report, keep_reports)
    with ThreadPoolExecutor(max_workers=engine.settings.concurrency,
                            thread_name_prefix="sweep") as pool:
        try:
            state.run(pool)
        except StoreError as exc:
            state.stop.set()
            if result.aborted is None:
                result.aborted = f"stopped early: {exc}"
        finally:
            state.close()
            state.drain()

    result.reports.sort(key=lambda report: report.project_id)
    gcs1, fs1 = engine.request_count()
    result.gcs_requests, result.firestore_requests = gcs1 - gcs0, fs1 - fs0
    result.duration_seconds = time.monotonic() - started
    _record(engine.reconciler, result)
    return result


def _record(reconciler: str, result: SweepResult) -> None:
    if result.aborted:
        log.error("sweep aborted", extra={"scanned": result.scanned, "reason": result.aborted})
        return
    metrics.SWEEP_DURATION_SECONDS.labels(reconciler).observe(result.duration_seconds)
    metrics.LAST_SWEEP_TIMESTAMP.labels(reconciler).set_to_current_time()
    metrics.PROJECTS_DRIFTED.labels(reconciler).set(result.drifted)
    for status in PROJECT_STATUSES:
        metrics.PROJECTS.labels(reconciler, status).set(result.statuses[status])
    log.info("sweep finished", extra={
        "scanned": result.scanned, "actions": dict(result.actions),
        "gcsRequests": result.gcs_requests, "firestoreRequests": result.firestore_requests,
        "durationSeconds": round(result.duration_seconds, 3)})
