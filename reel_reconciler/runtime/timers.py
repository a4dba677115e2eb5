"""The runtime's timers: a piece of work after each interval until the runtime stops, spread
so that many replicas and reconcilers do not fire in lockstep."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta

from reel_reconciler.model import ReconcilerId

log = logging.getLogger(__name__)


def jittered(seconds: float, spread: float = 0.1) -> float:
    """Timers of many replicas and reconcilers should not fire in lockstep."""
    return seconds * (1 + random.uniform(-spread, spread))


async def every(stopping: asyncio.Event, interval: Callable[[], timedelta],
                work: Callable[[], Awaitable[None]], reconciler: ReconcilerId,
                jitter: bool = True) -> None:
    """After each (jittered) interval, do the work, until `stopping` is set. A failure is
    logged and the timer goes on: the next round may well succeed. The interval is asked
    for each round, so a spec read later is honoured."""
    while not stopping.is_set():
        seconds = interval().total_seconds()
        try:
            await asyncio.wait_for(stopping.wait(), jittered(seconds) if jitter else seconds)
            return
        except TimeoutError:
            pass
        try:
            await work()
        except Exception:
            log.exception("timer failed", extra={"reconciler": reconciler.label})
