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

A distributed round runs the same code spread out: its coordinator chooses the passes
(`round_passes`), each worker runs one range of it (`RangePart`), and the coordinator ends
with the indexed pass (`round_rest`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
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
from reel_reconciler.engine.sweep.ranges import KeyRange, SweepPlan, WorkProfile
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
                 keep_reports: bool, part: RangePart | None = None) -> None:
        super().__init__(engine, trigger, dry_run, result, on_report, keep_reports)
        self.reads = delta_reads(engine)
        self.store = fingerprint_store(engine)
        self.schedule = schedule
        self.part = part
        """A worker's range of a distributed round; None: the whole round, here."""
        self.count = 0
        """Ranges in the round, which staggers the first full passes (`next_due`)."""
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
        self.stored = load_prints(self.store, ranges)
        if self.part is None:
            self.full = full_ranges(self.stored, self.schedule)
            self.position = {key_range: index for index, key_range in enumerate(ranges)}
            self.count = len(ranges)
        else:  # the coordinator chose; a range whose fingerprints are gone since is full too
            self.full = {key_range for key_range, stored in self.stored.items()
                         if self.part.full or stored.prints is None}
            self.position = dict.fromkeys(ranges, self.part.index)
            self.count = self.part.count
        try:
            super().run(pool, ranges, parallel, remainder)
            if self.part is None:  # a worker's range leaves these to its coordinator
                self.rest(pool, every_full=len(self.full) == len(ranges))
        finally:
            self.result.delta = {"ranges": len(ranges), "fullRanges": len(self.full),
                                 "usersRead": self.users_read, "indexed": self.indexed}

    def rest(self, pool: ThreadPoolExecutor, every_full: bool) -> None:
        """After the ranges: the indexed pass, and the counts by status unless every range
        was passed in full (its reports then count every project)."""
        if not self.stopped:
            self.indexed_pass(pool)
        if not self.stopped and not every_full:
            self.result.by_status = self.reads.count_by_status(PROJECT_STATUSES)

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
            full_at, due_at = now, next_due(now, full_every, first, self.count)
        self.store.save(key_range, fresh, full_at, due_at, stored)

    def splits(self, count: int) -> list[str]:
        """None: new split points would rename every range and lose every fingerprint (a
        forced sweep moves them; the next round then passes every range in full once)."""
        del count
        return []

    def profile(self) -> WorkProfile | None:
        """None, for the same reason as `splits`."""
        return None


class _RoundRest(_DeltaSweep):
    """What a distributed delta round leaves to its coordinator once every range reported:
    the projects without a usable userId (only when every range was passed in full, as a
    local round), the indexed pass and the counts by status. The coordinator does not know
    which projects the workers reconciled, so the indexed pass reads every project not at
    rest (a few, against the round's reads)."""

    def __init__(self, engine: Pipeline, schedule: Schedule, result: SweepResult,
                 trigger: Trigger, dry_run: bool, every_full: bool) -> None:
        super().__init__(engine, schedule, result, trigger, dry_run, None, False)
        self.every_full = every_full

    def run(self, pool: ThreadPoolExecutor, ranges: list[KeyRange], parallel: int,
            remainder: bool = True) -> None:
        del ranges, parallel
        try:
            if remainder and not self.stopped:
                _Sweep.without_user(self, pool, [])
            self.rest(pool, self.every_full)
        finally:
            self.result.delta = {"indexed": self.indexed}


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


@dataclass(frozen=True)
class RangePart:
    """A worker's range of a distributed round: where it stands among the round's ranges
    and whether the coordinator passes it in full."""

    index: int
    count: int
    full: bool


def delta_reads(engine: Pipeline) -> DeltaReads:
    firestore = engine.firestore
    if not isinstance(firestore, DeltaReads):
        raise TypeError("a delta round needs a store that reads users (DeltaReads)")
    return firestore


def fingerprint_store(engine: Pipeline, reconciler: str | None = None) -> FingerprintStore:
    """The reconciler's fingerprints (the engine's own unless named), keyed by range alike
    in local and distributed rounds, so that turning distribution on or off keeps them."""
    return FingerprintStore(delta_reads(engine), engine.settings.fingerprint_collection,
                            reconciler or engine.reconciler.label)


def load_prints(store: FingerprintStore, ranges: Iterable[KeyRange]) -> dict[KeyRange, Stored]:
    """Each range's stored fingerprints; a warning for each range they cannot serve."""
    loaded = {key_range: store.load(key_range) for key_range in ranges}
    for key_range, stored in loaded.items():
        if stored.problem is not None:
            log.warning("fingerprints unusable: range passed in full", extra={
                "reconciler": store.reconciler, "range": str(key_range),
                "reason": stored.problem})
    return loaded


def full_ranges(stored: Mapping[KeyRange, Stored], schedule: Schedule) -> set[KeyRange]:
    """The ranges a round passes in full: due by the schedule, or without fingerprints."""
    return due_for_full({key_range: found.due_at if found.prints is not None else None
                         for key_range, found in stored.items()},
                        schedule.now, schedule.interval, schedule.full_every)


def round_passes(engine: Pipeline, schedule: Schedule, ranges: list[KeyRange],
                 reconciler: str | None = None) -> list[bool]:
    """For a distributed round's coordinator: whether each range is passed in full, by the
    schedule a local round follows, so that full passes fall in the same rounds. The
    fingerprints are those of `reconciler`, the one its work items name."""
    store = fingerprint_store(engine, reconciler)
    full = due_for_full({key_range: store.due(key_range) for key_range in ranges},
                        schedule.now, schedule.interval, schedule.full_every)
    return [key_range in full for key_range in ranges]


def delta_sweep(engine: Pipeline, schedule: Schedule, dry_run: bool = False,
                trigger: Trigger = Trigger.SWEEP,
                on_report: Callable[[Report], None] | None = None, keep_reports: bool = True,
                plan: SweepPlan | None = None, part: RangePart | None = None) -> SweepResult:
    """One delta round (see the module docstring); its result says what it passed how.
    With `part`, a worker's one range of a distributed round (`plan` its share)."""
    result = SweepResult(dry_run=dry_run, delta={})
    state = _DeltaSweep(engine, schedule, result, trigger, dry_run, on_report, keep_reports,
                        part)
    return run_sweep(state, plan or SweepPlan())


def round_rest(engine: Pipeline, schedule: Schedule, dry_run: bool, trigger: Trigger,
               every_full: bool, userless: bool) -> SweepResult:
    """The coordinator's part of a distributed delta round (`_RoundRest`), after its ranges;
    `userless`: pass the projects without a usable userId too."""
    result = SweepResult(dry_run=dry_run, delta={})
    state = _RoundRest(engine, schedule, result, trigger, dry_run, every_full)
    return run_sweep(state, SweepPlan.of_share([], remainder=userless))
