"""One daemon per ReelReconciler: its runtime, listeners and watchdog live as long as it does."""

from __future__ import annotations

from typing import Any

import kopf

from controller.operator import GROUP, PLURAL, VERSION
from controller.operator.lifecycle import Supervisor


@kopf.daemon(GROUP, VERSION, PLURAL, id="supervisor", cancellation_timeout=60)
async def supervise(body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo,
                    stopped: kopf.DaemonStopped, **_: Any) -> None:
    await Supervisor(body, namespace or "default", name, memo).run(stopped)
