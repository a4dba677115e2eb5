"""The runtimes of this process: those running, for the readiness endpoint and the
reconcile endpoint, and the drains of those still stopping, which a successor of the same
name waits for."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reel_reconciler.runtime.reconciler import ReconcilerRuntime

RUNTIMES: dict[str, ReconcilerRuntime] = {}
"""Every started runtime of this process, by key."""
STOPPING: dict[str, asyncio.Task[None]] = {}
"""The drain of each runtime still stopping, by key."""


def drained(key: str, drain: asyncio.Task[None]) -> None:
    """A drain's done-callback: the key is free once its last drain ended."""
    if STOPPING.get(key) is drain:
        del STOPPING[key]
