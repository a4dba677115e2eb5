"""The stale-job timer: fail jobs silent past `spec.staleJobs.timeout`, reconcile their projects."""

from __future__ import annotations

from typing import Any

import kopf

from controller.operator import GROUP, PLURAL, VERSION
from controller.operator.lifecycle import IDLE_POLL, jittered, runtime_of, stale_summary
from controller.operator.status import StatusWriter


@kopf.daemon(GROUP, VERSION, PLURAL, id="stale-job-timer", cancellation_timeout=60)
async def stale_job_timer(memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    while not stopped:
        runtime = runtime_of(memo)
        if runtime is None:
            await stopped.wait(IDLE_POLL)
            continue
        await stopped.wait(jittered(runtime.spec.stale_jobs.interval.total_seconds()))
        runtime = runtime_of(memo)
        if runtime is not None and not stopped:
            result = await runtime.cleanup_stale_jobs()
            status: StatusWriter = memo["status"]
            await status.write(stale_summary(result))
