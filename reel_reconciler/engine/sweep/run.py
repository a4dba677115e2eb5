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

A sweep may cut the keyspace into userId ranges (`SweepPlan`, `ranges.py`): each range does
all of the above over its share of the streams and of the listing, up to `parallel` ranges
at once on threads of their own, all feeding one pool of reconciles. The active jobs are
still read once and the projects counted once; an outage in one range stops every range.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reel_reconciler.engine.reconcile import HALTED, Pipeline, Prefetched, store_failure
from reel_reconciler.engine.sweep.cursor import FolderListing, JobsByUser
from reel_reconciler.engine.sweep.order import UserGroup, in_folder_order, profiled, user_groups
from reel_reconciler.engine.sweep.prefetch import Prefetch
from reel_reconciler.engine.sweep.ranges import KeyRange, SweepPlan, WorkProfile, merged_splits
from reel_reconciler.engine.sweep.result import RangeSummary, SweepResult
from reel_reconciler.engine.sweep.start import streams_of, suspect_an_empty_bucket
from reel_reconciler.model import ObjectInfo, Report, Trigger
from reel_reconciler.stores import StoreError
from reel_reconciler.stores.firestore import Document
from reel_reconciler.stores.values import by_project

T = TypeVar("T")

PROJECT_FIELDS = ("userId", "status", "promptList", "clipFilenames", "stitchedFilename",
                  "errorInfo", "durationSeconds", "updatedAt", "lastReconciliation")
"""The project fields the policy reads (reel_reconciler.model.Project) and those a correction
writes (their values before it go to the change log), plus the opt-out field: decoding the
others (title, timestamps, ...) would cost the sweep as much as the reads it saves."""
JOB_FIELDS = ("projectId", "userId", "status", "promptCount", "createdAt", "startedAt",
              "updatedAt", "timedOutAt", "error")
"""The job fields the policy reads (reel_reconciler.model.Job) plus the join key."""

PREFETCH_DEPTH = 2
"""Pages (or batches) each stream reads ahead of the merge."""


Work = list[tuple[str, Document | None, Prefetched | None]]


@dataclass
class _RangeRun:
    """One range's share of a sweep: its streams, its pending work, what it saw."""

    key_range: KeyRange
    pending: deque[Future[list[Report]]] = field(default_factory=deque)
    streams: list[Prefetch[Any]] = field(default_factory=list)
    profile: WorkProfile = field(default_factory=WorkProfile)
    listing: FolderListing | None = None
    scanned: int = 0
    seconds: float = 0.0


class _Sweep:
    """One sweep's state: the ranges, the pool's pending work, the result."""

    def __init__(self, engine: Pipeline, trigger: Trigger, dry_run: bool, result: SweepResult,
                 on_report: Callable[[Report], None] | None, keep_reports: bool) -> None:
        self.engine = engine
        self.firestore, self.gcs = streams_of(engine)
        self.keep_reports = keep_reports
        self.trigger = trigger
        self.dry_run = dry_run
        self.result = result
        self.on_report = on_report
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.window = engine.settings.concurrency * 2
        self.runs: list[_RangeRun] = []
        settings = engine.settings
        self.idle = settings.request_timeout + settings.retry_deadline + 5.0
        self.counted: Future[int] | None = None
        self.active: dict[str, list[Document]] | None = None

    def prefetch(self, run: _RangeRun, source: Iterable[T], what: str) -> Prefetch[T]:
        stream = Prefetch(source, PREFETCH_DEPTH, self.idle, what)
        run.streams.append(stream)
        return stream

    def run(self, pool: ThreadPoolExecutor, ranges: list[KeyRange], parallel: int,
            remainder: bool = True) -> None:
        """Every range (up to `parallel` at once), then the projects no range can return
        (unless `remainder` is False: a share of a round leaves them to its coordinator)."""
        self.runs = [_RangeRun(key_range) for key_range in ranges]
        if len(self.runs) == 1:
            self.run_range(pool, self.runs[0])
        elif self.runs:
            with ThreadPoolExecutor(max_workers=parallel,
                                    thread_name_prefix="sweep-range") as ranges_pool:
                for future in [ranges_pool.submit(self.guarded, pool, run) for run in self.runs]:
                    future.result()
        if not self.stopped and remainder:
            self.without_user(pool, ranges)

    def without_user(self, pool: ThreadPoolExecutor, ranges: list[KeyRange]) -> None:
        """The projects no userId-ordered stream returned, if the count says there are any
        (all of them when no range ran: a round's coordinator asks for that pass alone)."""
        if self.runs:
            streamed = sum(run.scanned for run in self.runs)
            total = (self.counted.result() if self.counted is not None
                     else self.firestore.count_projects())
            if total <= streamed:
                return
        strings_only = not ranges or not ranges[0].whole
        batch = self.engine.settings.page_size
        pending: deque[Future[list[Report]]] = deque()
        for project_id in self.firestore.projects_without_user(batch, strings_only):
            if self.stopped:
                break
            self.submit(pool, [(project_id, None, None)], pending)
        self.drain(pending)

    def guarded(self, pool: ThreadPoolExecutor, run: _RangeRun) -> None:
        """A range on a thread of its own: a store that fails stops every range."""
        try:
            self.run_range(pool, run)
        except StoreError as exc:
            self.stop.set()
            with self.lock:
                if self.result.aborted is None:
                    self.result.aborted = f"stopped early: {exc}"

    def run_range(self, pool: ThreadPoolExecutor, run: _RangeRun) -> None:
        """One range's streams merged a user at a time (see the module docstring)."""
        if self.stopped:
            return
        started = time.monotonic()
        try:
            self.merge(pool, run)
        except StoreError:
            self.stop.set()
            raise
        finally:
            for stream in run.streams:
                stream.close()
            self.drain(run.pending)
            run.seconds = time.monotonic() - started

    def listing_window(self, run: _RangeRun) -> tuple[str, str | None, str | None]:
        """The range's listing: the root prefix, and the first and past-the-last names."""
        root = self.engine.policy.location.root_prefix + "/"
        bounds = run.key_range.bounds
        if bounds is None:
            return root, None, None
        return root, root + bounds[0], None if bounds[1] is None else root + bounds[1]

    def listed(self, run: _RangeRun, pages: Iterable[list[ObjectInfo]]
               ) -> Iterable[list[ObjectInfo]]:
        """The range's listing pages as the merge reads them (a delta round hashes them)."""
        del run
        return pages

    def merge(self, pool: ThreadPoolExecutor, run: _RangeRun) -> None:
        firestore = self.firestore
        batch = self.engine.settings.page_size
        root, start, end = self.listing_window(run)
        bounds = run.key_range.bounds
        listing = FolderListing(self.prefetch(
            run, self.listed(run, self.gcs.listing(root, start, end)), "gcs listing"))
        run.listing = listing
        jobs = JobsByUser(in_folder_order(user_groups(self.prefetch(
            run, firestore.jobs_by_user(batch, JOB_FIELDS, bounds), "firestore jobs stream"))))
        active = self.active_jobs()
        projects = in_folder_order(profiled(user_groups(
            self.prefetch(run, firestore.projects_by_user(
                batch, (*PROJECT_FIELDS, self.engine.policy.opt_out_field), bounds),
                          "firestore projects stream")), run.profile))
        for group in projects:
            if self.stopped:
                return
            self.start_count(pool)
            run.scanned += len(group.documents)
            try:
                work = self.work(group, root, listing, jobs, active)
            except StoreError as exc:
                self.fail(group, exc)
                raise
            self.submit(pool, work, run.pending)

    def active_jobs(self) -> dict[str, list[Document]]:
        """Every queued or processing job by project, read once per sweep: after the first
        jobs stream has started and before the first projects stream does."""
        with self.lock:
            if self.active is None:
                self.active = by_project(self.firestore.active_jobs())
            return self.active

    def start_count(self, pool: ThreadPoolExecutor) -> None:
        """Count the projects once the streams flow: the emulator counts by a scan."""
        with self.lock:
            if self.counted is None:
                self.counted = pool.submit(self.firestore.count_projects)

    @property
    def stopped(self) -> bool:
        """An outage, or the reconciler told to stop: checked between users."""
        return (self.stop.is_set() or self.engine.halted.is_set()
                or self.result.aborted is not None)

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
        jobs_of = by_project(job_docs or ())
        work: Work = []
        for doc in group.documents:
            own: list[Document] | None = None
            if job_docs is not None:
                found = {job.id: job for job in active.get(doc.id, ())}
                found.update((job.id, job) for job in jobs_of.get(doc.id, ()))
                own = sorted(found.values(), key=lambda job: job.id)
            listed = objects_of.get(doc.id, []) if objects is not None else None
            work.append((doc.id, doc, Prefetched(jobs=own, objects=listed)))
        return work

    def submit(self, pool: ThreadPoolExecutor, work: Work,
               pending: deque[Future[list[Report]]]) -> None:
        if not work:
            return
        pending.append(pool.submit(self.reconcile, work))
        while len(pending) >= self.window:
            self.add(pending.popleft().result())

    def reconcile(self, work: Work) -> list[Report]:
        """A user's projects decided on what the streams read, their corrections in one
        commit; a project the streams could not read (no usable userId) reads itself."""
        if self.stopped:
            return []
        engine = self.engine
        read = [item for item in work if item[1] is not None]
        reports = engine.reconcile_read(read, self.trigger, self.dry_run) if read else []
        unread = [project_id for project_id, doc, _ in work if doc is None]
        if unread and not self.stopped:
            reports += engine.reconcile_many(unread, self.trigger, self.dry_run)
        if any(report.unreachable for report in reports):
            self.stop.set()
        return reports

    def fail(self, group: UserGroup, exc: StoreError) -> None:
        """The group's listing or jobs could not be read: each of its projects failed so."""
        reports = [store_failure(doc.id, exc) for doc in group.documents]
        for report in reports:
            self.engine.recorder.record(report, self.trigger, 0.0)
        self.add(reports)

    def add(self, reports: list[Report]) -> None:
        with self.lock:
            for report in reports:
                self.result.add(report, self.keep_reports)
                if self.on_report is not None:
                    self.on_report(report)

    def drain(self, pending: deque[Future[list[Report]]]) -> None:
        while pending:
            self.add(pending.popleft().result())

    def close(self) -> None:
        for run in self.runs:
            for stream in run.streams:
                stream.close()

    def ranges(self) -> list[RangeSummary]:
        """What each range did."""
        return [RangeSummary(run.key_range, run.scanned, run.seconds) for run in self.runs]

    def splits(self, count: int) -> list[str]:
        """Split points that give `count` ranges similar work, from the counts seen."""
        return merged_splits((run.profile for run in self.runs), count)

    def profile(self) -> WorkProfile | None:
        """The projects per user of a share's one range, which its round's coordinator turns
        into split points (`merged_splits`) with the other ranges'."""
        return self.runs[0].profile if len(self.runs) == 1 else None


def sweep(engine: Pipeline, dry_run: bool = False, trigger: Trigger = Trigger.SWEEP,
          on_report: Callable[[Report], None] | None = None,
          keep_reports: bool = True, plan: SweepPlan | None = None) -> SweepResult:
    """Reconcile every project once, streaming the stores (see the module docstring).

    `keep_reports=False` keeps counts only (`reports` stays empty), so that memory does not
    grow with the drift a sweep finds; `on_report` still sees every report. `plan` cuts the
    keyspace into ranges read `plan.parallel` at a time (default: one range, one stream per
    store)."""
    result = SweepResult(dry_run=dry_run)
    state = _Sweep(engine, trigger, dry_run, result, on_report, keep_reports)
    return run_sweep(state, plan or SweepPlan())


def run_sweep(state: _Sweep, plan: SweepPlan) -> SweepResult:
    """Run a sweep's state over `plan`'s ranges: the body of `sweep`, which a delta round
    (reel_reconciler.engine.sweep.delta) shares."""
    engine, result, dry_run = state.engine, state.result, state.dry_run
    ranges = plan.key_ranges()
    started = time.monotonic()
    gcs0, fs0 = engine.request_count()
    billed0 = engine.billed_count()
    with ThreadPoolExecutor(max_workers=engine.settings.concurrency,
                            thread_name_prefix="sweep") as pool:
        try:
            if not dry_run:
                suspect_an_empty_bucket(engine)
            state.run(pool, ranges, plan.parallel, plan.remainder)
        except StoreError as exc:
            state.stop.set()
            if result.aborted is None:
                result.aborted = f"stopped early: {exc}"
        finally:
            state.close()
            for run in state.runs:
                state.drain(run.pending)
            engine.breaker.clear_suspicion()
    if engine.halted.is_set() and result.aborted is None:
        result.aborted = HALTED

    result.reports.sort(key=lambda report: report.project_id)
    if len(ranges) > 1:
        result.ranges = state.ranges()
        if result.aborted is None:
            result.splits = state.splits(plan.ranges)
            result.splits_for = plan.ranges
    gcs1, fs1 = engine.request_count()
    result.gcs_requests, result.firestore_requests = gcs1 - gcs0, fs1 - fs0
    result.documents_read, result.gcs_class_a, result.gcs_class_b = (
        now - before for now, before in zip(engine.billed_count(), billed0, strict=True))
    result.duration_seconds = time.monotonic() - started
    if plan.share is None:  # a share's figures are its round's, recorded by the coordinator
        result.record(engine.reconciler)
    elif result.aborted is None:
        result.profile = state.profile()
    return result
