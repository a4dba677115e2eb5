"""Reconcile projects: read -> observe -> decide -> commit, as one batch pipeline.

A targeted reconcile is a batch of one, a burst of listener events a batch of many, and a
sweep hands in batches it has already read. Every batch goes the same way: each project is
decided on what was read; the corrections go in one atomic commit, each write still guarded
by its own precondition; a commit that meets a stale precondition falls back to writing one
by one; the projects someone wrote since they were read are read again and decided again, up
to `max_attempts` (D4). An outage ends the batch: the rest is reported as not attempted (one
retry deadline, not one per project). Any read error ends a project with `action: error` and
no write (D2).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reel_reconciler.config import Settings
from reel_reconciler.engine import changelog
from reel_reconciler.engine.breaker import Breaker
from reel_reconciler.engine.changelog import Outcome
from reel_reconciler.engine.recorder import Recorder
from reel_reconciler.engine.stores import ObjectStore, ProjectStore
from reel_reconciler.model import (
    Action,
    DriftKind,
    InvalidDocument,
    InvalidJob,
    Job,
    ObjectInfo,
    Observation,
    Project,
    ReconcilerId,
    Report,
    Trigger,
)
from reel_reconciler.policy import decide, outside_names
from reel_reconciler.policy.destructive import is_destructive
from reel_reconciler.stores import Conflict, Outage, StoreError
from reel_reconciler.stores.firestore import SERVER_TIME, Document, FirestoreStore
from reel_reconciler.stores.gcs import GcsStore

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Prefetched:
    """What a sweep already read about one project, so that its first attempt need not read
    it again; None: not read, ask the store. Retries after a conflict always re-read."""

    jobs: Sequence[Document] | None = None
    """Every job of the project, in id order (as the store's per-project query returns them)."""
    objects: Sequence[ObjectInfo] | None = None
    """Every object under the project's prefix (a complete listing)."""
    changed_at: datetime | None = None
    """When a storage notification said an object of the project changed."""


Read = Sequence[tuple[str, Document | None, Prefetched | None]]
"""Projects as read: id, document (None: it does not exist), and what else was read."""


@dataclass(frozen=True)
class Correction:
    """A decided write, not made yet: the report it stands for and its precondition, and
    what the change log needs of it."""

    report: Report
    update: Mapping[str, Any]
    read_update_time: datetime
    trigger: Trigger
    before: Mapping[str, Any] | None
    """The fields of the version read, which the write replaces."""


class Outcomes:
    """A batch's reports as they become known, when each did, and the outage that ends it."""

    def __init__(self) -> None:
        self.reports: dict[str, Report] = {}
        self.known_at: dict[str, float] = {}
        self.outage: str | None = None

    def set(self, report: Report) -> None:
        self.reports[report.project_id] = report
        self.known_at[report.project_id] = time.monotonic()
        if report.unreachable and self.outage is None:
            self.outage = report.error

    def not_attempted(self, project_id: str, attempt: int) -> None:
        self.set(_error(project_id, f"not attempted: {self.outage}", attempt, True))


def _parse_jobs(documents: Sequence[Document]) -> tuple[tuple[Job, ...], tuple[InvalidJob, ...]]:
    jobs: list[Job] = []
    invalid: list[InvalidJob] = []
    for doc in documents:
        try:
            jobs.append(Job.parse(doc.id, doc.data, doc.update_time))
        except InvalidDocument as exc:
            raw = doc.data.get("status") if doc.data else None
            invalid.append(InvalidJob(id=doc.id, raw_status=raw, reason=str(exc)))
    return tuple(jobs), tuple(invalid)


class Pipeline:
    """The batch pipeline over any stores that speak `ProjectStore` and `ObjectStore`."""

    def __init__(self, settings: Settings, firestore: ProjectStore, gcs: ObjectStore,
                 recorder: Recorder, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.policy = settings.policy
        self.firestore = firestore
        self.gcs = gcs
        self.recorder = recorder
        self.clock = clock
        self.breaker = Breaker(firestore, settings.breaker_collection, recorder.reconciler,
                               settings.max_destructive,
                               settings.destructive_window.total_seconds())
        self.halted = threading.Event()
        """Set when the reconciler is told to stop: from then on nothing is written (a write
        already sent finishes: it is one precondition-guarded commit)."""

    @property
    def reconciler(self) -> ReconcilerId:
        return self.recorder.reconciler

    def halt(self) -> None:
        """Refuse every write from now on, on every thread: a stop (Observe, suspend, delete,
        failover, SIGTERM) must not wait for a sweep or a batch to end before it bites."""
        self.halted.set()

    def request_count(self) -> tuple[int, int]:
        """(GCS, Firestore) requests made so far, for run summaries."""
        return self.gcs.requests.total(), self.firestore.requests.total()

    def reconcile(self, project_id: str, trigger: Trigger, dry_run: bool = False) -> Report:
        """One project: a batch of one."""
        return self.reconcile_many([project_id], trigger, dry_run)[0]

    def reconcile_many(self, project_ids: Sequence[str], trigger: Trigger,
                       dry_run: bool = False,
                       changed_at: Mapping[str, datetime] | None = None) -> list[Report]:
        """Projects read together: their documents in one read, their jobs in one query per
        few dozen; listings stay per project. A failed read fails the whole batch (the queue
        retries it). One report per distinct id, in the order given. `changed_at`: when
        storage notifications said the projects' objects changed."""
        ids = list(dict.fromkeys(project_ids))
        started, outcomes, changed = time.monotonic(), Outcomes(), changed_at or {}
        read = self._read(ids, outcomes, 1, changed)
        return self._run(read, trigger, dry_run, started, outcomes, ids, changed)

    def reconcile_read(self, read: Read, trigger: Trigger, dry_run: bool = False
                       ) -> list[Report]:
        """Projects whose documents (and perhaps more) the caller has read; the reports in
        the order of `read`."""
        ids = [project_id for project_id, _, _ in read]
        return self._run(read, trigger, dry_run, time.monotonic(), Outcomes(), ids, {})

    def _run(self, read: Read, trigger: Trigger, dry_run: bool, started: float,
             outcomes: Outcomes, order: list[str], changed_at: Mapping[str, datetime]
             ) -> list[Report]:
        attempt = 1
        while read:
            corrections = self._decide_all(read, trigger, dry_run, attempt, outcomes)
            conflicted = self._commit(corrections, attempt, outcomes)
            if not conflicted:
                break
            if attempt == self.settings.max_attempts:
                for project_id in conflicted:
                    outcomes.set(Report(
                        project_id=project_id, action=Action.CONFLICT, attempts=attempt,
                        error=f"document kept changing: gave up after {attempt} attempts"))
                break
            log.info("write conflict, re-reading",
                     extra={"projects": conflicted, "attempt": attempt})
            attempt += 1
            read = self._read(conflicted, outcomes, attempt, changed_at)
        for project_id in dict.fromkeys(order):
            self.recorder.record(outcomes.reports[project_id], trigger,
                                 outcomes.known_at[project_id] - started)
        return [outcomes.reports[project_id] for project_id in order]

    def _read(self, ids: Sequence[str], outcomes: Outcomes, attempt: int,
              changed_at: Mapping[str, datetime]) -> Read:
        """Documents and jobs of `ids` in a few requests; on failure each is reported so."""
        try:
            documents = self.firestore.get_projects(ids)
            jobs = self.firestore.jobs_of_projects([i for i in ids if i in documents])
        except StoreError as exc:
            for project_id in ids:
                outcomes.set(store_failure(project_id, exc, attempt))
            return []
        return [(project_id, documents.get(project_id),
                 Prefetched(jobs=jobs.get(project_id),
                            changed_at=changed_at.get(project_id)))
                for project_id in ids]

    def _decide_all(self, read: Read, trigger: Trigger, dry_run: bool, attempt: int,
                    outcomes: Outcomes) -> dict[str, Correction]:
        corrections: dict[str, Correction] = {}
        for project_id, doc, prefetched in read:
            if project_id in corrections or project_id in outcomes.reports:
                continue
            if outcomes.outage is not None:
                outcomes.not_attempted(project_id, attempt)
                continue
            if doc is None:
                outcomes.set(_error(project_id, "project document not found", attempt))
                continue
            decided = self._decide(doc, trigger, prefetched, attempt)
            if isinstance(decided, Report):
                outcomes.set(decided)
            elif dry_run:
                outcomes.set(decided.report.model_copy(update={"action": Action.DRIFT}))
            elif (held := self._brake(decided.report)) is not None:
                outcomes.set(held)
            else:
                corrections[project_id] = decided
        return corrections

    def _brake(self, report: Report) -> Report | None:
        """A destructive correction the breaker refuses: reported, not written."""
        if not is_destructive(report):
            return None
        refused = self.breaker.allow()
        if refused is None:
            return None
        return report.model_copy(update={"action": Action.SKIPPED,
                                         "reason": f"{BREAKER_HELD}: {refused}"})

    def _commit(self, corrections: dict[str, Correction], attempt: int,
                outcomes: Outcomes) -> list[str]:
        """Write the corrections together, or one by one if one of them is stale (a single
        one is written alone at once); returns the projects someone wrote since we read them.
        A halted pipeline writes nothing: each correction is reported as not written."""
        if self.halted.is_set():
            for correction in corrections.values():
                outcomes.set(_halted(correction.report))
            return []
        if len(corrections) > 1:
            return self._commit_together(corrections, attempt, outcomes)
        return self._commit_each(corrections, attempt, outcomes)

    def _logged(self, project_id: str, correction: Correction, outcome: Outcome,
                written: datetime | None = None, error: str | None = None) -> None:
        """The change log's line of one project write."""
        changelog.record(
            document="project", doc_id=project_id, trigger=correction.trigger,
            drift=correction.report.drift_kinds, before=correction.before,
            fields=correction.update, server_time=SERVER_TIME,
            precondition=correction.read_update_time, outcome=outcome,
            reconciler=self.reconciler, attempt=correction.report.attempts, written=written,
            error=error)

    def _commit_together(self, corrections: dict[str, Correction], attempt: int,
                         outcomes: Outcomes) -> list[str]:
        """One commit; a stale document in it refuses them all, and each is then written
        alone (so the change log has a line per project write, not for the refused batch)."""
        try:
            written = self.firestore.update_projects(
                {project_id: (c.update, c.read_update_time)
                 for project_id, c in corrections.items()})
        except Conflict as exc:
            log.info("batched write conflict, writing one by one",
                     extra={"projects": len(corrections), "error": str(exc)})
        except StoreError as exc:
            for project_id, correction in corrections.items():
                self._logged(project_id, correction, Outcome.ERROR, error=str(exc))
                outcomes.set(store_failure(project_id, exc, attempt))
            return []
        else:
            for project_id, correction in corrections.items():
                self._logged(project_id, correction, Outcome.WRITTEN, written.get(project_id))
                outcomes.set(correction.report)
            return []
        return self._commit_each(corrections, attempt, outcomes)

    def _commit_each(self, corrections: dict[str, Correction], attempt: int,
                     outcomes: Outcomes) -> list[str]:
        conflicted: list[str] = []
        for project_id, correction in corrections.items():
            if outcomes.outage is not None:
                outcomes.not_attempted(project_id, attempt)
                continue
            if self.halted.is_set():
                outcomes.set(_halted(correction.report))
                continue
            try:
                written = self.firestore.update_project(project_id, correction.update,
                                                        correction.read_update_time)
            except Conflict:
                self._logged(project_id, correction, Outcome.CONFLICT)
                conflicted.append(project_id)
            except StoreError as exc:
                self._logged(project_id, correction, Outcome.ERROR, error=str(exc))
                outcomes.set(store_failure(project_id, exc, attempt))
            else:
                self._logged(project_id, correction, Outcome.WRITTEN, written)
                outcomes.set(correction.report)
        return conflicted

    def _decide(self, doc: Document, trigger: Trigger, prefetched: Prefetched | None,
                attempt: int) -> Report | Correction:
        """Observe one project and run the policy: a final report, or a correction to write."""
        try:
            observation = self._observe(doc, trigger, prefetched)
            if isinstance(observation, Report):
                return observation
            plan = decide(observation, self.policy)
        except StoreError as exc:
            return store_failure(doc.id, exc, attempt)
        except ValueError as exc:
            return _error(doc.id, f"cannot decide: {exc}", attempt)
        report = plan.report
        if report.attempts != attempt:
            report = report.model_copy(update={"attempts": attempt})
        if plan.update is None:
            return report
        return Correction(report, plan.update, observation.project.update_time, trigger,
                          doc.data)

    def _observe(self, doc: Document, trigger: Trigger,
                 prefetched: Prefetched | None) -> Observation | Report:
        """Read whatever else the policy needs about one project (raises StoreError)."""
        known = prefetched or Prefetched()
        location = self.policy.location
        try:
            project = Project.parse(doc.id, doc.data, doc.update_time, location,
                                    self.policy.opt_out_field)
        except InvalidDocument as exc:
            status = doc.data.get("status") if doc.data else None
            return Report(project_id=doc.id, original_status=str(status) if status else None,
                          action=Action.SKIPPED, reason=f"invalid document: {exc}",
                          drift_kinds=[DriftKind.INVALID_DOCUMENT])
        jobs, invalid_jobs = _parse_jobs(
            known.jobs if known.jobs is not None
            else self.firestore.jobs_of_projects([project.id]).get(project.id, []))
        for bad in invalid_jobs:
            log.warning("invalid job document ignored",
                        extra={"jobId": bad.id, "projectId": project.id, "reason": bad.reason})
            self.recorder.invalid_job()
        prefix = location.project_prefix(project.user_id, project.id)
        objects = tuple(known.objects if known.objects is not None
                        else self.gcs.list_prefix(prefix))
        outside = {name: self.gcs.stat(name) for name in sorted(outside_names(project, prefix))}
        return Observation(project=project, jobs=jobs, objects=objects, outside=outside,
                           now=self.clock(), forced=trigger.forced, invalid_jobs=invalid_jobs,
                           changed_at=known.changed_at)


class Engine(Pipeline):
    """One reconciler's engine on the real stores, which the sweep, the stale-job cleanup and
    the listeners also read."""

    firestore: FirestoreStore
    gcs: GcsStore

    def __init__(self, settings: Settings, firestore: FirestoreStore, gcs: GcsStore,
                 reconciler: ReconcilerId, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(settings, firestore, gcs, Recorder(reconciler), clock)


def _error(project_id: str, message: str, attempts: int, outage: bool = False) -> Report:
    return Report(project_id=project_id, action=Action.ERROR, error=message, attempts=attempts,
                  unreachable=outage or None)


HALTED = "not written: the reconciler is stopping"
BREAKER_HELD = "not written: the breaker on destructive corrections is tripped"


def _halted(report: Report) -> Report:
    """A decided correction that a stop kept from being written: drift seen, nothing done."""
    return report.model_copy(update={"action": Action.SKIPPED, "reason": HALTED})


def store_failure(project_id: str, exc: StoreError, attempts: int = 1) -> Report:
    """A store's failure as a report: unreachable when it was an outage."""
    return _error(project_id, str(exc), attempts, outage=isinstance(exc, Outage))
