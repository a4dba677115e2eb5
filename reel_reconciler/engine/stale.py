"""Stale jobs: mark jobs silent past the timeout `failed` (with a precondition), then
reconcile their projects by the usual rules.

Querying every active job each time costs a read per active job, 288 times a day. The jobs
listener already holds each active job's status and timestamps, so the runtime's timer
passes that view: only the jobs it shows silent are read (one batched get) and judged again
from what was read. A query pass still runs every `STALE_FULL_PASS_EVERY`, for a view that
is wrong without knowing it (docs/design.md, "Stale jobs")."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from reel_reconciler import defaults, metrics
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
from reel_reconciler.stores.feedstate import Seen
from reel_reconciler.stores.firestore import JOB_SERVER_TIME, Document, failed_job

log = logging.getLogger(__name__)

ActiveJobs = Mapping[str, Seen]
"""The active jobs by id as the jobs listener last saw them (stores.firestore.ACTIVE_JOB_FIELDS
and the update time of each)."""


@dataclass
class StaleCleanup:
    stale_jobs: list[str] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    error: str | None = None
    opted_out: list[str] = field(default_factory=list)
    """Stale jobs left as they are: their project opted out of every write of ours."""
    candidates: int | None = None
    """Jobs read because the listener's view showed them silent; None: every active job was
    queried instead."""

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
                       trigger: Trigger = Trigger.STALE_JOB,
                       view: ActiveJobs | None = None) -> StaleCleanup:
    """Find jobs queued/processing past the stale timeout, fail them, reconcile their projects.

    With the jobs listener's `view`, only the jobs it shows silent are read; without one,
    every active job is queried. A read error stops the cleanup and is returned in `error`;
    nothing half-written remains, since every job is failed by one precondition-guarded write.
    """
    result = StaleCleanup()
    try:
        with reading_for(trigger.value):
            _cleanup(engine, dry_run, trigger, result, view)
    except StoreError as exc:
        result.error = str(exc)
        log.error("stale-job cleanup failed", extra={"error": str(exc)})
    return result


def candidates(view: ActiveJobs, now: datetime, stale_after: timedelta) -> list[str]:
    """The jobs the view shows silent past the timeout, in id order. A job whose fields in
    the view do not parse (a missing projectId, a timestamp of the wrong type) is one too: it
    is read and judged as the query would judge it, never dropped on the view's word."""
    found = []
    for job_id, seen in view.items():
        try:
            job = Job.parse(job_id, seen.data, seen.at)
        except InvalidDocument:
            found.append(job_id)
            continue
        if is_stale(job, now, stale_after):
            found.append(job_id)
    return sorted(found)


def _read_candidates(engine: Engine, now: datetime, view: ActiveJobs,
                     result: StaleCleanup) -> list[Document]:
    """The candidates' documents as they are now (one batched get), for judging again: the
    app may have written since the view saw them."""
    ids = candidates(view, now, engine.settings.stale_timeout)
    result.candidates = len(ids)
    log.info("stale-job candidates from the jobs listener",
             extra={"activeJobs": len(view), "candidates": len(ids)})
    if not ids:
        return []
    found = engine.firestore.get_jobs(ids)
    return [found[job_id] for job_id in ids if job_id in found]


def _stale(engine: Engine, now: datetime, view: ActiveJobs | None,
           result: StaleCleanup) -> list[tuple[Job, Document]]:
    """The queued and processing jobs silent past the timeout, with their documents."""
    documents = (engine.firestore.active_jobs() if view is None
                 else _read_candidates(engine, now, view, result))
    found = []
    for doc in documents:
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


def _cleanup(engine: Engine, dry_run: bool, trigger: Trigger, result: StaleCleanup,
             view: ActiveJobs | None) -> None:
    now = engine.clock()
    stale = _stale(engine, now, view, result)
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


class StaleTimer:
    """The runtime's stale-job timer: the listener's view when it has one, and a query of
    every active job at least every `full_every` (the first run included), so that a job a
    wrong view misses is failed within that bound. A query that failed is due again."""

    def __init__(self, full_every: timedelta = defaults.STALE_FULL_PASS_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.full_every = full_every.total_seconds()
        self._clock = clock
        self._last_full: float | None = None

    def due(self) -> bool:
        """Whether the next run queries every active job whatever the view."""
        last = self._last_full
        return last is None or self._clock() - last >= self.full_every

    def run(self, engine: Engine, dry_run: bool,
            view: Callable[[], ActiveJobs | None]) -> StaleCleanup:
        """One cleanup; `view` gives the listener's view, or None while it is not current."""
        now = self._clock()
        seen = None if self.due() else view()
        result = cleanup_stale_jobs(engine, dry_run, view=seen)
        if seen is None and result.error is None:
            self._last_full = now
        return result
