"""Delta rounds: a timed sweep that lists every range but reads Firestore only where storage
changed, for the projects not at rest, and in full for the ranges whose turn it is.

Per range, the listing is hashed folder by folder (`fingerprint`) and compared with the
range's stored fingerprints. Users whose folder changed, appeared or vanished (or whose last
reconcile was not `settled`) get their projects and jobs read, a few dozen users per query,
and are reconciled as the full sweep reconciles them: the same decision on the same reads,
the same preconditions. The ranges due for a full pass (`due_for_full`: about every
`sweep.fullEvery`, and at once when their fingerprints are missing or unusable) run the full
sweep's merge, hashing its listing on the way. Then an indexed pass reconciles every project
in `generating` or `stitching` and every project with a queued or processing job that the
round has not reconciled yet, storage changed or not. Each range's new fingerprints are
written last, only for a range that completed, over the version read.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from reel_reconciler.engine.batch import BREAKER_HELD, HALTED
from reel_reconciler.engine.reconcile import Pipeline
from reel_reconciler.engine.stores import DeltaReads
from reel_reconciler.engine.sweep.cursor import FolderListing, JobsByUser
from reel_reconciler.engine.sweep.fingerprint import (
    DIRTY,
    Fingerprinter,
    differs,
    due_for_full,
    folder_of,
    next_due,
)
from reel_reconciler.engine.sweep.order import UserGroup
from reel_reconciler.engine.sweep.ranges import KeyRange, SweepPlan
from reel_reconciler.engine.sweep.result import SweepResult
from reel_reconciler.engine.sweep.run import (
    JOB_FIELDS,
    PROJECT_FIELDS,
    Work,
    _RangeRun,
    _Sweep,
    run_sweep,
)
from reel_reconciler.engine.sweep.stored_prints import FingerprintStore, Stored
from reel_reconciler.model import (
    PROJECT_STATUSES,
    Action,
    ObjectInfo,
    Report,
    Trigger,
    folder_user,
)
from reel_reconciler.stores.firestore import IN_LIMIT, Document

log = logging.getLogger(__name__)

INDEXED_BATCH = 100
"""Projects of the indexed pass reconciled together (one batched read)."""


def settled(report: Report) -> bool:
    """Whether a report needs no second look until the user's folder changes again. Not
    settled: a conflict, an error, drift only observed (reported again at every round), and
    a skip that time alone ends (the settle window, a stitch at work, a flapping hold) or
    that refused a write (the breaker, a stop). Settled besides no change and a correction:
    a skip for an invalid document or an opt-out, which a write ends (their next full pass
    reports them again), and one for a live job, which the indexed pass reads at every
    round while the job is active."""
    if report.action in (Action.NO_CHANGE, Action.CORRECTED):
        return True
    if report.action is not Action.SKIPPED:
        return False
    refused = (report.reason or "").startswith((BREAKER_HELD, HALTED))
    return report.retry_after is None and report.held_until is None and not refused


class _DeltaSweep(_Sweep):
    """The full sweep's state, with fingerprints per range and a pass for what is not at rest."""

    def __init__(self, engine: Pipeline, schedule: Schedule, result: SweepResult,
                 trigger: Trigger, dry_run: bool, on_report: Callable[[Report], None] | None,
                 keep_reports: bool) -> None:
        super().__init__(engine, trigger, dry_run, result, on_report, keep_reports)
        firestore = engine.firestore
        if not isinstance(firestore, DeltaReads):
            raise TypeError("a delta round needs a store that reads users (DeltaReads)")
        self.reads = firestore
        self.store = FingerprintStore(firestore, engine.settings.fingerprint_collection,
                                      engine.reconciler.label)
        self.schedule = schedule
        self.stored: dict[KeyRange, Stored] = {}
        self.full: set[KeyRange] = set()
        self.prints: dict[KeyRange, Fingerprinter] = {}
        self.unsettled: set[str] = set()
        """Users with a report that is not `settled`: stored DIRTY, read again next round."""
        self.seen: set[str] = set()
        self.position: dict[KeyRange, int] = {}
        self.users_read = 0
        self.indexed = 0

    def run(self, pool: ThreadPoolExecutor, ranges: list[KeyRange], parallel: int,
            remainder: bool = True) -> None:
        self.stored = {key_range: self.store.load(key_range) for key_range in ranges}
        for key_range, stored in self.stored.items():
            if stored.problem is not None:
                log.warning("fingerprints unusable: range passed in full", extra={
                    "reconciler": self.store.reconciler, "range": str(key_range),
                    "reason": stored.problem})
        self.full = due_for_full(
            {key_range: stored.due_at if stored.prints is not None else None
             for key_range, stored in self.stored.items()},
            self.schedule.now, self.schedule.interval, self.schedule.full_every)
        self.position = {key_range: index for index, key_range in enumerate(ranges)}
        try:
            super().run(pool, ranges, parallel, remainder)
            if not self.stopped:
                self.indexed_pass(pool)
            if not self.stopped and len(self.full) < len(ranges):
                self.result.by_status = self.reads.count_by_status(PROJECT_STATUSES)
        finally:
            self.result.delta = {"ranges": len(ranges), "fullRanges": len(self.full),
                                 "usersRead": self.users_read, "indexed": self.indexed}

    def without_user(self, pool: ThreadPoolExecutor, ranges: list[KeyRange]) -> None:
        """Projects without a usable userId have no folder: only a round passing every range
        in full looks for them (as a forced sweep does)."""
        if len(self.full) == len(ranges):
            super().without_user(pool, ranges)

    def start_count(self, pool: ThreadPoolExecutor) -> None:
        """Counted only for the userless pass, which only an all-full round makes."""
        if len(self.full) == len(self.runs):
            super().start_count(pool)

    def listed(self, run: _RangeRun, pages: Iterable[list[ObjectInfo]]
               ) -> Iterable[list[ObjectInfo]]:
        prints = self.prints[run.key_range] = Fingerprinter(self.listing_window(run)[0])
        return prints.tap(pages)

    def run_range(self, pool: ThreadPoolExecutor, run: _RangeRun) -> None:
        super().run_range(pool, run)
        if not self.stopped and self.result.aborted is None:
            self.save(run.key_range)

    def merge(self, pool: ThreadPoolExecutor, run: _RangeRun) -> None:
        if run.key_range not in self.full:
            self.delta(pool, run)
            return
        super().merge(pool, run)
        if not self.stopped and run.listing is not None:
            run.listing.drain()

    def delta(self, pool: ThreadPoolExecutor, run: _RangeRun) -> None:
        """The range's listing hashed; the users whose folder changed read and reconciled."""
        root, start, end = self.listing_window(run)
        stored = self.stored[run.key_range].prints or {}
        prints = self.prints[run.key_range] = Fingerprinter(root)
        held: dict[str, list[ObjectInfo]] = {}
        folder: list[ObjectInfo] = []

        def close(done: tuple[str, bytes] | None) -> None:
            if done is None:
                return
            if differs(stored, *done):
                held[done[0]] = list(folder)
            folder.clear()

        for page in self.prefetch(run, self.gcs.listing(root, start, end), "gcs listing"):
            if self.stopped:
                return
            for obj in page:
                if folder_of(root, obj.name) is None:
                    continue
                close(prints.add(obj))
                folder.append(obj)
        close(prints.close())
        for user in stored.keys() - prints.prints.keys():
            held[user] = []
        users = sorted(held)  # code point order is the byte order of the folders
        active = self.active_jobs()
        for first in range(0, len(users), IN_LIMIT):
            if self.stopped:
                return
            self.read_users(pool, run, users[first:first + IN_LIMIT], held, root, active)

    def read_users(self, pool: ThreadPoolExecutor, run: _RangeRun, users: list[str],
                   held: dict[str, list[ObjectInfo]], root: str,
                   active: dict[str, list[Document]]) -> None:
        """A few changed users' projects and jobs, in two queries, merged as the sweep merges
        its streams."""
        fields = (*PROJECT_FIELDS, self.engine.policy.opt_out_field)
        projects = _by_user(self.reads.projects_of_users(users, fields))
        jobs = _by_user(self.reads.jobs_of_users(users, JOB_FIELDS))
        self.users_read += len(users)
        listing = FolderListing([[obj for user in users for obj in held[user]]])
        job_groups = JobsByUser(UserGroup(user, jobs.get(user, [])) for user in users)
        for user in users:
            documents = projects.get(user)
            if not documents or folder_user(user) != user:
                continue
            run.scanned += len(documents)
            work = self.work(UserGroup(user, documents), root, listing, job_groups, active)
            self.submit(pool, work, run.pending)

    def reconcile(self, work: Work) -> list[Report]:
        reports = super().reconcile(work)
        users = {project_id: (doc.data or {}).get("userId") if doc is not None else None
                 for project_id, doc, _ in work}
        for report in reports:
            user = users.get(report.project_id)
            if not settled(report) and isinstance(user, str):
                with self.lock:
                    self.unsettled.add(user)
        return reports

    def add(self, reports: list[Report]) -> None:
        super().add(reports)
        with self.lock:
            self.seen.update(report.project_id for report in reports)

    def indexed_pass(self, pool: ThreadPoolExecutor) -> None:
        """Every project a worker or stitcher may have left mid-way, storage changed or not:
        those in `generating` or `stitching` and those with a queued or processing job."""
        ids = set(self.reads.projects_not_at_rest()) | set(self.active_jobs())
        ids -= self.seen
        self.indexed = len(ids)
        pending: deque[Future[list[Report]]] = deque()
        ordered = sorted(ids)
        for first in range(0, len(ordered), INDEXED_BATCH):
            if self.stopped:
                break
            chunk = ordered[first:first + INDEXED_BATCH]
            self.submit(pool, [(project_id, None, None) for project_id in chunk], pending)
        self.drain(pending)

    def save(self, key_range: KeyRange) -> None:
        prints = self.prints.get(key_range)
        if prints is None:
            return
        stored = self.stored[key_range]
        fresh = dict(prints.prints)
        with self.lock:  # a user whose folder is gone too: read again while unsettled
            for user in self.unsettled:
                if key_range.holds(user):
                    fresh[user] = DIRTY
        now, full_every = self.schedule.now, self.schedule.full_every
        full_at, due_at = stored.full_at, stored.due_at
        if key_range in self.full or due_at is None:
            first = None if stored.prints is not None else self.position[key_range]
            full_at, due_at = now, next_due(now, full_every, first, len(self.position))
        self.store.save(key_range, fresh, full_at, due_at, stored)

    def splits(self, count: int) -> list[str]:
        """None: new split points would rename every range and lose every fingerprint (a
        forced sweep moves them; the next round then passes every range in full once)."""
        del count
        return []


def _by_user(documents: Iterable[Document]) -> dict[str, list[Document]]:
    """Documents by their (string) userId, each user's in id order."""
    found: dict[str, list[Document]] = {}
    for doc in sorted(documents, key=lambda doc: doc.id):
        user = (doc.data or {}).get("userId")
        if isinstance(user, str):
            found.setdefault(user, []).append(doc)
    return found


@dataclass(frozen=True)
class Schedule:
    """When a round runs, how often rounds come, and how often each range must be passed in
    full."""

    now: datetime
    interval: timedelta
    full_every: timedelta


def delta_sweep(engine: Pipeline, schedule: Schedule, dry_run: bool = False,
                trigger: Trigger = Trigger.SWEEP,
                on_report: Callable[[Report], None] | None = None, keep_reports: bool = True,
                plan: SweepPlan | None = None) -> SweepResult:
    """One delta round (see the module docstring); its result says what it passed how."""
    result = SweepResult(dry_run=dry_run, delta={})
    state = _DeltaSweep(engine, schedule, result, trigger, dry_run, on_report, keep_reports)
    return run_sweep(state, plan or SweepPlan())
