"""Job liveness: which jobs still own their project, which are stale, which one to restore from."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from controller.model import ACTIVE_JOB_STATUSES, Job


def is_active(job: Job, now: datetime, stale_after: timedelta) -> bool:
    """Queued or processing, with a sign of life within the stale timeout."""
    sign = job.last_sign_of_life
    return job.status in ACTIVE_JOB_STATUSES and sign is not None and now - sign <= stale_after


def is_stale(job: Job, now: datetime, stale_after: timedelta) -> bool:
    """Queued or processing but silent past the timeout (or never showed a sign of life)."""
    return job.status in ACTIVE_JOB_STATUSES and not is_active(job, now, stale_after)


def latest_job_for(jobs: Iterable[Job], prompt_count: int) -> Job | None:
    """The newest job that generated exactly this many prompts: the only restore source."""
    candidates = [job for job in jobs if job.prompt_count == prompt_count]
    return max(candidates, key=lambda job: (job.created, job.id), default=None)
