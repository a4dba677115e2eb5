"""Job liveness: which jobs still own their project, which are stale, which ones to restore
from."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from reel_reconciler.model import ACTIVE_JOB_STATUSES, Job


def is_active(job: Job, now: datetime, stale_after: timedelta) -> bool:
    """Queued or processing, with a sign of life within the stale timeout."""
    sign = job.last_sign_of_life
    return job.status in ACTIVE_JOB_STATUSES and sign is not None and now - sign <= stale_after


def is_stale(job: Job, now: datetime, stale_after: timedelta) -> bool:
    """Queued or processing but silent past the timeout (or never showed a sign of life)."""
    return job.status in ACTIVE_JOB_STATUSES and not is_active(job, now, stale_after)


def is_revived(job: Job, now: datetime, stale_after: timedelta) -> bool:
    """Failed by a timeout, yet its worker was only slow: it wrote after it was marked, and
    recently. Such a worker goes on writing blind; fighting it would flip the project at
    every prompt. Without our marker (the app's own cleanup) any recent write counts."""
    if not job.timed_out:
        return False
    sign = job.last_sign_of_life
    if sign is None or now - sign > stale_after:
        return False
    return job.timed_out_at is None or sign > job.timed_out_at


def restore_sources(jobs: Iterable[Job], prompt_count: int) -> list[Job]:
    """The jobs that generated exactly this many prompts, newest first: where an empty slot
    may be filled from (an older job's clips count too: the app once wiped the list)."""
    candidates = [job for job in jobs if job.prompt_count == prompt_count]
    return sorted(candidates, key=lambda job: (job.created, job.id), reverse=True)
