"""Liveness: the loops that must keep turning (each runtime's watchdog timer, each operator
supervisor) say when they last did. A loop silent past its tolerance means a hung process,
which Kubernetes should restart; readiness cannot tell, since a hung process keeps its last
answers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Loop:
    """One loop that must tick at least once per `tolerance` seconds."""

    name: str
    tolerance: float
    ticked_at: float = field(default_factory=time.monotonic)

    def tick(self) -> None:
        self.ticked_at = time.monotonic()

    def silent_for(self, now: float) -> float:
        return now - self.ticked_at


LOOPS: dict[str, Loop] = {}
"""Every loop of this process that liveness watches, by name."""


def watch_loop(name: str, tolerance: float) -> Loop:
    """Start watching a loop (ticked now); `forget_loop` when it ends on purpose."""
    loop = Loop(name, tolerance)
    LOOPS[name] = loop
    return loop


def forget_loop(loop: Loop) -> None:
    if LOOPS.get(loop.name) is loop:
        del LOOPS[loop.name]


def stalled(now: float | None = None) -> list[str]:
    """The loops silent past their tolerance, each as one line."""
    now = time.monotonic() if now is None else now
    return [f"{loop.name} silent for {loop.silent_for(now):.0f}s (tolerance "
            f"{loop.tolerance:.0f}s)" for loop in list(LOOPS.values())
            if loop.silent_for(now) > loop.tolerance]
