"""The sweep timer: every project, every `spec.sweep.interval` (jittered)."""

from __future__ import annotations

from typing import Any

import kopf

from controller.engine import Trigger
from controller.operator import GROUP, PLURAL, VERSION
from controller.operator.lifecycle import IDLE_POLL, jittered, publish_sweep, runtime_of


@kopf.daemon(GROUP, VERSION, PLURAL, id="sweep-timer", cancellation_timeout=60)
async def sweep_timer(memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    while not stopped:
        runtime = runtime_of(memo)
        if runtime is None:
            await stopped.wait(IDLE_POLL)
            continue
        await stopped.wait(jittered(runtime.spec.sweep.interval.total_seconds()))
        runtime = runtime_of(memo)
        if runtime is not None and not stopped:
            result = await runtime.sweep(Trigger.SWEEP)
            await publish_sweep(memo, runtime, result)
