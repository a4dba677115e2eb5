"""The sweep timer: every project, every `spec.sweep.interval` (jittered)."""

from __future__ import annotations

from typing import Any

import kopf

from controller.engine import Trigger
from controller.operator import GROUP, PLURAL, VERSION
from controller.operator.lifecycle import every, publish_sweep
from controller.operator.runtime import ReconcilerRuntime


@kopf.daemon(GROUP, VERSION, PLURAL, id="sweep-timer", cancellation_timeout=60)
async def sweep_timer(memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    async def run_sweep(runtime: ReconcilerRuntime) -> None:
        await publish_sweep(memo, runtime, await runtime.sweep(Trigger.SWEEP))

    await every(memo, stopped, lambda runtime: runtime.spec.sweep.interval, run_sweep)
