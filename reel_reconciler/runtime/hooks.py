"""What the owner of a runtime is told: the operator writes it to the object's status;
`watch` only logs, which the runtime does anyway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from reel_reconciler.engine import StaleCleanup, SweepResult
from reel_reconciler.engine.breaker import BreakerState
from reel_reconciler.model import Report, RestartReason


async def _nothing(_: object) -> None:
    return None


@dataclass
class Hooks:
    on_sweep: Callable[[SweepResult], Awaitable[None]] = _nothing
    on_stale: Callable[[StaleCleanup], Awaitable[None]] = _nothing
    on_tick: Callable[[RestartReason | None], Awaitable[None]] = _nothing
    """After each watchdog check: why the listeners were restarted, if they were."""
    on_breaker: Callable[[BreakerState], Awaitable[None]] = _nothing
    """When the breaker's state changed (tripped here or elsewhere, resumed)."""
    on_flapping: Callable[[Report], Awaitable[None]] = _nothing
    """A project newly held because its corrections keep being undone (once per hold)."""
