"""Stale jobs: mark jobs silent past the timeout `failed` (with a precondition), then
reconcile their projects by the usual rules."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from reel_reconciler import metrics
from reel_reconciler.engine import changelog
from reel_reconciler.engine.changelog import Outcome
from reel_reconciler.engine.reconcile import Engine
from reel_reconciler.model import (
    Action,
    DriftKind,
    InvalidDocument,
    Job,
    Report,
    Trigger,
    timeout_message,
)
from reel_reconciler.policy import is_stale
from reel_reconciler.stores import Conflict, StoreError
from reel_reconciler.stores.billing import reading_for
from reel_reconciler.stores.firestore import JOB_SERVER_TIME, Document, failed_job

log = logging.getLogger(__name__)


@dataclass
class StaleCleanup:
    stale_jobs: list[str] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    error: str | None = None
    opted_out: list[str] = field(default_factory=list)
    """Stale jobs left as they are: their project opted out of every write of ours."""

    @property
    def failed(self) -> bool:
        return self.error is not None or any(r.action is Action.ERROR for r in self.reports)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"staleJobs": self.stale_jobs,
                                "reports": [report.as_json() for report in self.reports]}
        if self.opted_out:
            body["optedOut"] = self.opted_out
        if self.error:
            body["error"] = self.error
        return body


def mark_failed(engine: Engine, job: Job, data: Mapping[str, Any] | None,
                trigger: Trigger = Trigger.STALE_JOB) -> bool:
    """Fail the job unless it moved since we read it; a job that moved is judged again.
    `data`: the job's fields as read, for the change log's line of each attempt."""
    timeout = engine.settings.stale_timeout
    message = timeout_message(timeout)
    for attempt in range(1, engine.settings.max_attempts + 1):
        if engine.halted.is_set():
            return False
        logged = partial(changelog.record, document="job", doc_id=job.id,
                         project_id=job.project_id, trigger=trigger,
                         drift=[DriftKind.STALE_JOB], before=data, fields=failed_job(message),
                         server_time=JOB_SERVER_TIME, precondition=job.update_time,
                         reconciler=engine.reconciler, attempt=attempt)
        try:
            written = engine.firestore.fail_job(job.id, message, job.update_time)
        except Conflict:
            logged(outcome=Outcome.CONFLICT)
        except StoreError as exc:
            logged(outcome=Outcome.ERROR, error=str(exc))
            raise
        else:
            logged(outcome=Outcome.WRITTEN, written=written)
            return True
        doc = engine.firestore.get_job(job.id)
        if doc is None:
            return False
        try:
            job = Job.parse(doc.id, doc.data, doc.update_time)
        except InvalidDocument:
            return False
        data = doc.data
        if not is_stale(job, engine.clock(), timeout):
            return False
    return False


def cleanup_stale_jobs(engine: Engine, dry_run: bool = False,
                       trigger: Trigger = Trigger.STALE_JOB) -> StaleCleanup:
    """Find jobs queued/processing past the stale timeout, fail them, reconcile their projects.

    A read error stops the cleanup and is returned in `error`; nothing half-written remains,
    since every job is failed by one precondition-guarded write.
    """
    result = StaleCleanup()
    try:
        with reading_for(trigger.value):
            _cleanup(engine, dry_run, trigger, result)
    except StoreError as exc:
        result.error = str(exc)
        log.error("stale-job cleanup failed", extra={"error": str(exc)})
    return result


def _stale(engine: Engine, now: datetime) -> list[tuple[Job, Document]]:
    """The queued and processing jobs silent past the timeout, with their documents."""
    found = []
    for doc in engine.firestore.active_jobs():
        try:
            job = Job.parse(doc.id, doc.data, doc.update_time)
        except InvalidDocument as exc:
            log.warning("invalid job document skipped", extra={"jobId": doc.id,
                                                                "reason": str(exc)})
            continue
        if is_stale(job, now, engine.settings.stale_timeout):
            found.append((job, doc))
    return found


def _opted_out(engine: Engine, jobs: list[Job]) -> set[str]:
    """The projects among the jobs' that opted out: their jobs are not ours to fail either.
    Any value but absent, null or false keeps us off (a malformed one too)."""
    field_name = engine.policy.opt_out_field
    ids = sorted({job.project_id for job in jobs})
    documents = engine.firestore.get_projects(ids) if ids else {}
    values = {project_id: (doc.data or {}).get(field_name)
              for project_id, doc in documents.items()}
    return {project_id for project_id, value in values.items()
            if value is not None and value is not False}


def _cleanup(engine: Engine, dry_run: bool, trigger: Trigger, result: StaleCleanup) -> None:
    now = engine.clock()
    stale = _stale(engine, now)
    spared = _opted_out(engine, [job for job, _ in stale])
    projects: list[str] = []
    for job, doc in stale:
        if engine.halted.is_set():
            return
        if job.project_id in spared:
            log.warning("stale job left alone: its project opted out", extra={
                "jobId": job.id, "projectId": job.project_id, "status": job.status})
            result.opted_out.append(job.id)
            continue
        sign = job.last_sign_of_life
        log.warning("stale job", extra={
            "jobId": job.id, "projectId": job.project_id, "status": job.status,
            "silentMinutes": round((now - sign).total_seconds() / 60, 1) if sign else None})
        if dry_run or mark_failed(engine, job, doc.data, trigger):
            result.stale_jobs.append(job.id)
            if not dry_run:
                metrics.STALE_JOBS_TOTAL.labels(engine.reconciler.label).inc()
            if job.project_id not in projects:
                projects.append(job.project_id)
    result.reports = [engine.reconcile(pid, trigger, dry_run) for pid in projects]
