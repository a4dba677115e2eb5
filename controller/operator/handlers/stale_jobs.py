"""The stale-job timer: fail jobs silent past `spec.staleJobs.timeout`, reconcile their projects."""

from __future__ import annotations

from typing import Any

import kopf

from controller.operator import GROUP, PLURAL, VERSION
from controller.operator.lifecycle import every, stale_summary
from controller.operator.runtime import ReconcilerRuntime


@kopf.daemon(GROUP, VERSION, PLURAL, id="stale-job-timer", cancellation_timeout=60)
async def stale_job_timer(memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    async def clean_up(runtime: ReconcilerRuntime) -> None:
        await memo["status"].write(stale_summary(await runtime.cleanup_stale_jobs()))

    await every(memo, stopped, lambda runtime: runtime.spec.stale_jobs.interval, clean_up)
