"""One daemon per ReelReconciler: its runtime, listeners and watchdog live as long as it does."""

from __future__ import annotations

from typing import Any

import kopf

from reel_reconciler.operator import GROUP, PLURAL, VERSION
from reel_reconciler.operator.lifecycle import Supervisor
from reel_reconciler.runtime.reconciler import DRAIN_TIMEOUT

STOP_GRACE = DRAIN_TIMEOUT + 10
"""Seconds Kopf lets a stopping daemon exit by itself before it cancels it: the runtime's
writes end at once, this is only for its drain (a cancel would not cut that short either)."""


@kopf.daemon(GROUP, VERSION, PLURAL, id="supervisor", cancellation_backoff=STOP_GRACE,
             cancellation_timeout=STOP_GRACE)
async def supervise(body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo,
                    stopped: kopf.DaemonStopped, **_: Any) -> None:
    await Supervisor(body, namespace or "default", name, memo).run(stopped)
