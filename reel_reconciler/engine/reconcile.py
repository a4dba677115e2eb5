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
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from reel_reconciler.config import Settings
from reel_reconciler.engine.batch import (
    BREAKER_HELD,
    HALTED,
    Batch,
    Correction,
    Prefetched,
    Read,
    error_report,
    store_failure,
)
from reel_reconciler.engine.breaker import Breaker
from reel_reconciler.engine.commit import Committer
from reel_reconciler.engine.recorder import Recorder
from reel_reconciler.engine.stores import ObjectStore, ProjectStore
from reel_reconciler.model import (
    Action,
    DriftKind,
    InvalidDocument,
    InvalidJob,
    Job,
    Observation,
    Project,
    ReconcilerId,
    Report,
    Trigger,
)
from reel_reconciler.policy import decide, outside_names
from reel_reconciler.policy.destructive import is_destructive
from reel_reconciler.stores import StoreError
from reel_reconciler.stores.billing import reading_for
from reel_reconciler.stores.firestore import Document, FirestoreStore
from reel_reconciler.stores.gcs import GcsStore

__all__ = ["HALTED", "Engine", "Pipeline", "Prefetched", "Read", "store_failure", "utcnow"]
"""The pipeline, and what the sweep hands it and reads back."""

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        self.committer = Committer(firestore, recorder.reconciler, self.halted)

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

    def billed_count(self) -> tuple[int, int, int]:
        """(Firestore documents read, GCS class A, GCS class B operations) so far, for run
        summaries: what the price lists charge, where requests hide it."""
        classes = self.gcs.requests.billed.by_class()
        return self.firestore.requests.billed.total(), classes["A"], classes["B"]

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
        batch = Batch(trigger, dry_run, ids, changed_at or {})
        with reading_for(trigger.value):
            return self._run(batch, self._read(batch, ids))

    def reconcile_read(self, read: Read, trigger: Trigger, dry_run: bool = False
                       ) -> list[Report]:
        """Projects whose documents (and perhaps more) the caller has read; the reports in
        the order of `read`."""
        ids = [project_id for project_id, _, _ in read]
        with reading_for(trigger.value):
            return self._run(Batch(trigger, dry_run, ids), read)

    def _run(self, batch: Batch, read: Read) -> list[Report]:
        while read:
            corrections = self._decide_all(batch, read)
            conflicted = self.committer.commit(batch, corrections)
            if not conflicted:
                break
            if batch.attempt == self.settings.max_attempts:
                self.committer.refused(corrections, conflicted)
                for project_id in conflicted:
                    batch.set(Report(
                        project_id=project_id, action=Action.CONFLICT, attempts=batch.attempt,
                        error=f"document kept changing: gave up after {batch.attempt} attempts"))
                break
            log.info("write conflict, re-reading",
                     extra={"projects": conflicted, "attempt": batch.attempt})
            batch.attempt += 1
            read = self.committer.settle(batch, corrections, conflicted,
                                         self._read(batch, conflicted))
        for project_id in dict.fromkeys(batch.order):
            self.recorder.record(batch.reports[project_id], batch.trigger,
                                 batch.known_at[project_id] - batch.started)
        return batch.in_order()

    def _read(self, batch: Batch, ids: Sequence[str]) -> Read:
        """Documents and jobs of `ids` in a few requests; on failure each is reported so."""
        try:
            documents = self.firestore.get_projects(ids)
            jobs = self.firestore.jobs_of_projects([i for i in ids if i in documents])
        except StoreError as exc:
            for project_id in ids:
                batch.failed(project_id, exc)
            return []
        return [(project_id, documents.get(project_id),
                 Prefetched(jobs=jobs.get(project_id),
                            changed_at=batch.changed_at.get(project_id)))
                for project_id in ids]

    def _decide_all(self, batch: Batch, read: Read) -> dict[str, Correction]:
        corrections: dict[str, Correction] = {}
        for project_id, doc, prefetched in read:
            if project_id in corrections or project_id in batch.reports:
                continue
            if batch.outage is not None:
                batch.not_attempted(project_id)
                continue
            if doc is None:
                batch.set(error_report(project_id, "project document not found", batch.attempt))
                continue
            decided = self._decide(batch, doc, prefetched)
            if isinstance(decided, Report):
                batch.set(decided)
            elif batch.dry_run:
                batch.set(decided.report.model_copy(update={"action": Action.DRIFT}))
            elif (held := self._brake(decided.report)) is not None:
                batch.set(held)
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

    def _decide(self, batch: Batch, doc: Document, prefetched: Prefetched | None
                ) -> Report | Correction:
        """Observe one project and run the policy: a final report, or a correction to write."""
        attempt = batch.attempt
        try:
            observation = self._observe(doc, batch.trigger, prefetched)
            if isinstance(observation, Report):
                return observation
            plan = decide(observation, self.policy)
        except StoreError as exc:
            return store_failure(doc.id, exc, attempt)
        except ValueError as exc:
            return error_report(doc.id, f"cannot decide: {exc}", attempt)
        report = plan.report
        if report.attempts != attempt:
            report = report.model_copy(update={"attempts": attempt})
        if plan.update is None:
            return report
        return Correction(report, plan.update, observation.project.update_time, batch.trigger,
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
