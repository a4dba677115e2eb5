"""Reconcile one project: observe -> decide -> apply, with bounded retries on conflicts (D4).

Any read error ends the attempt with `action: error` and no write (D2).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller import metrics
from controller.config import Settings
from controller.model import (
    Action,
    DriftKind,
    InvalidDocument,
    InvalidJob,
    Job,
    ObjectInfo,
    Observation,
    Project,
    Report,
    Trigger,
)
from controller.policy import decide, outside_names
from controller.stores import Conflict, Outage, StoreError
from controller.stores.firestore import Document, FirestoreStore
from controller.stores.gcs import GcsStore

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


@dataclass(frozen=True)
class Correction:
    """A decided write, not made yet: the report it stands for and its precondition."""

    report: Report
    update: Mapping[str, Any]
    read_update_time: datetime


def _parse_jobs(documents: list[Document]) -> tuple[tuple[Job, ...], tuple[InvalidJob, ...]]:
    jobs: list[Job] = []
    invalid: list[InvalidJob] = []
    for doc in documents:
        try:
            jobs.append(Job.parse(doc.id, doc.data, doc.update_time))
        except InvalidDocument as exc:
            raw = doc.data.get("status") if doc.data else None
            invalid.append(InvalidJob(id=doc.id, raw_status=raw, reason=str(exc)))
    return tuple(jobs), tuple(invalid)


class Engine:
    """One reconciler's engine: its settings, its two stores, and the metrics it records."""

    def __init__(self, settings: Settings, firestore: FirestoreStore, gcs: GcsStore,
                 reconciler: str = "cli", clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.policy = settings.policy
        self.firestore = firestore
        self.gcs = gcs
        self.reconciler = reconciler
        self.clock = clock

    def request_count(self) -> tuple[int, int]:
        """(GCS, Firestore) requests made so far, for run summaries."""
        return self.gcs.requests.total(), self.firestore.requests.total()

    def reconcile(self, project_id: str, trigger: Trigger, dry_run: bool = False,
                  snapshot: Document | None = None,
                  prefetched: Prefetched | None = None) -> Report:
        """Reconcile one project and record the outcome in logs and metrics.

        `snapshot` and `prefetched` are the sweep's reads of this project, used by the first
        attempt only; targeted reconciles pass neither and read the project themselves.
        """
        started = time.monotonic()
        report = self._reconcile(project_id, trigger, dry_run, snapshot, prefetched)
        self._record(report, trigger, time.monotonic() - started)
        return report

    def reconcile_many(self, project_ids: Sequence[str], trigger: Trigger,
                       dry_run: bool = False) -> list[Report]:
        """Reconcile a burst of projects with a few requests instead of several each: their
        documents in one read, their jobs in one query per few dozen, then `reconcile_read`.
        Listings stay per project. A failed read fails the whole burst (the queue retries
        it)."""
        ids = list(dict.fromkeys(project_ids))
        try:
            documents = self.firestore.get_projects(ids)
            jobs = self.firestore.jobs_of_projects(list(documents))
        except StoreError as exc:
            reports = [store_failure(project_id, exc, 1) for project_id in ids]
            for report in reports:
                self._record(report, trigger, 0.0)
            return reports
        return self.reconcile_read(
            [(project_id, documents.get(project_id), Prefetched(jobs=jobs.get(project_id)))
             for project_id in ids], trigger, dry_run)

    def reconcile_read(self, work: Sequence[tuple[str, Document | None, Prefetched | None]],
                       trigger: Trigger, dry_run: bool = False) -> list[Report]:
        """Reconcile projects whose documents (None: not found) and perhaps more were read
        together: each is decided on what was read, and their corrections go in one atomic
        commit, each write still guarded by its own precondition; a commit that meets a
        stale precondition falls back to writing one by one, and only the projects written
        since are read again. After an outage the rest is not attempted (one retry
        deadline, not one per project). Returns the reports in the order of `work`."""
        started = time.monotonic()
        reports: dict[str, Report] = {}
        corrections: dict[str, Correction] = {}
        outage: str | None = None
        for project_id, doc, prefetched in work:
            if project_id in reports or project_id in corrections:
                continue
            if outage is not None:
                reports[project_id] = _error(project_id, f"not attempted: {outage}", 1, True)
                continue
            if doc is None:
                reports[project_id] = _error(project_id, "project document not found", 1)
                continue
            decided = self._decide(doc, trigger, prefetched, 1)
            if isinstance(decided, Report) and decided.unreachable:
                outage = decided.error
            if isinstance(decided, Correction):
                if dry_run:
                    reports[project_id] = decided.report.model_copy(
                        update={"action": Action.DRIFT})
                else:
                    corrections[project_id] = decided
            else:
                reports[project_id] = decided
        conflicted = self._commit(corrections, reports)
        for report in reports.values():
            self._record(report, trigger, time.monotonic() - started)
        for project_id in conflicted:
            reports[project_id] = self.reconcile(project_id, trigger, dry_run)
        return [reports[project_id] for project_id, _, _ in work]

    def _commit(self, corrections: dict[str, Correction], reports: dict[str, Report]
                ) -> list[str]:
        """Write the corrections together, or one by one if one of them is stale; their
        reports go into `reports`; returns the projects someone wrote since we read them."""
        if not corrections:
            return []
        try:
            self.firestore.update_projects({project_id: (c.update, c.read_update_time)
                                            for project_id, c in corrections.items()})
        except Conflict as exc:
            log.info("batched write conflict, writing one by one",
                     extra={"projects": len(corrections), "error": str(exc)})
        except StoreError as exc:
            for project_id in corrections:
                reports[project_id] = store_failure(project_id, exc, 1)
            return []
        else:
            reports.update((project_id, c.report) for project_id, c in corrections.items())
            return []
        conflicted: list[str] = []
        outage: str | None = None
        for project_id, correction in corrections.items():
            if outage is not None:
                reports[project_id] = _error(project_id, f"not attempted: {outage}", 1, True)
                continue
            try:
                self.firestore.update_project(project_id, correction.update,
                                              correction.read_update_time)
            except Conflict:
                conflicted.append(project_id)
            except StoreError as exc:
                reports[project_id] = store_failure(project_id, exc, 1)
                if isinstance(exc, Outage):
                    outage = str(exc)
            else:
                reports[project_id] = correction.report
        return conflicted

    def _reconcile(self, project_id: str, trigger: Trigger, dry_run: bool,
                   snapshot: Document | None, prefetched: Prefetched | None) -> Report:
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            first = attempt == 1 and snapshot is not None
            try:
                doc = snapshot if first else self.firestore.get_project(project_id)
            except StoreError as exc:
                return store_failure(project_id, exc, attempt)
            if doc is None:
                return _error(project_id, "project document not found", attempt)
            decided = self._decide(doc, trigger, prefetched if first else None, attempt)
            if isinstance(decided, Report):
                return decided
            if dry_run:
                return decided.report.model_copy(update={"action": Action.DRIFT})
            try:
                self.firestore.update_project(project_id, decided.update,
                                              decided.read_update_time)
            except Conflict as exc:
                log.info("write conflict, re-reading",
                         extra={"projectId": project_id, "attempt": attempt, "error": str(exc)})
                continue
            except StoreError as exc:
                return store_failure(project_id, exc, attempt)
            return decided.report
        return Report(project_id=project_id, action=Action.CONFLICT, attempts=attempts,
                      error=f"document kept changing: gave up after {attempts} attempts")

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
        return Correction(report, plan.update, observation.project.update_time)

    def _observe(self, doc: Document, trigger: Trigger,
                 prefetched: Prefetched | None = None) -> Observation | Report:
        """Read everything the policy needs about one project (raises StoreError)."""
        known = prefetched or Prefetched()
        location = self.policy.location
        try:
            project = Project.parse(doc.id, doc.data, doc.update_time, location)
        except InvalidDocument as exc:
            status = doc.data.get("status") if doc.data else None
            return Report(project_id=doc.id, original_status=str(status) if status else None,
                          action=Action.SKIPPED, reason=f"invalid document: {exc}",
                          drift_kinds=[DriftKind.INVALID_DOCUMENT])
        jobs, invalid_jobs = _parse_jobs(list(known.jobs) if known.jobs is not None
                                         else self.firestore.project_jobs(project.id))
        for bad in invalid_jobs:
            log.warning("invalid job document ignored",
                        extra={"jobId": bad.id, "projectId": project.id, "reason": bad.reason})
            metrics.DRIFT_DETECTED_TOTAL.labels(self.reconciler,
                                                DriftKind.INVALID_DOCUMENT.value).inc()
        prefix = location.project_prefix(project.user_id, project.id)
        objects = tuple(known.objects if known.objects is not None
                        else self.gcs.list_prefix(prefix))
        outside = {name: self.gcs.stat(name) for name in sorted(outside_names(project, prefix))}
        return Observation(project=project, jobs=jobs, objects=objects, outside=outside,
                           now=self.clock(), forced=trigger.forced, invalid_jobs=invalid_jobs)

    def _record(self, report: Report, trigger: Trigger, seconds: float) -> None:
        r = self.reconciler
        metrics.RECONCILE_TOTAL.labels(r, trigger.value, report.action.value).inc()
        metrics.RECONCILE_DURATION_SECONDS.labels(r, trigger.value).observe(seconds)
        for kind in report.drift_kinds:
            metrics.DRIFT_DETECTED_TOTAL.labels(r, kind.value).inc()
            if report.action is Action.CORRECTED:
                metrics.CORRECTIONS_TOTAL.labels(r, kind.value).inc()
        if report.action is Action.CORRECTED:
            metrics.RECOVERED_VIDEO_SECONDS_TOTAL.labels(r).inc(report.recovered_video_seconds)
        quiet = report.action in (Action.NO_CHANGE, Action.SKIPPED) and not report.drift_kinds
        if quiet and not log.isEnabledFor(logging.DEBUG):
            return
        fields = {"projectId": report.project_id, "trigger": trigger.value,
                  "action": report.action.value, "durationSeconds": round(seconds, 4)}
        if quiet:
            log.debug("reconciled", extra=fields)
        elif report.action is Action.ERROR:
            log.error("reconcile failed", extra={**fields, "error": report.error})
        elif report.action is Action.SKIPPED:
            log.warning("skipped", extra={**fields, "reason": report.reason})
        else:
            log.info("reconciled", extra={
                **fields, "originalStatus": report.original_status,
                "correctedStatus": report.corrected_status,
                "missingClips": len(report.missing_clips),
                "restoredClips": len(report.restored_clips),
                "drift": [kind.value for kind in report.drift_kinds]})


def _error(project_id: str, message: str, attempts: int, outage: bool = False) -> Report:
    return Report(project_id=project_id, action=Action.ERROR, error=message, attempts=attempts,
                  unreachable=outage or None)


def store_failure(project_id: str, exc: StoreError, attempts: int = 1) -> Report:
    """A store's failure as a report: unreachable when it was an outage."""
    return _error(project_id, str(exc), attempts, outage=isinstance(exc, Outage))
