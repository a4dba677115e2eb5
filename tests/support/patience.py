"""How long a test waits for something that will happen: the one place that scales it.

Every bound a test waits on (a listener's delivery, a sweep's report, a process's exit) holds
with room to spare on an idle machine. A shared CI host can be slowed many times over by its
neighbours, and a bound met by the code at full speed then fails the run for nothing. Waits
are therefore scaled by `REEL_TEST_PATIENCE` (default 5; 1 gives the figures as written): a
run here once met a load average above 2,000 on 2 cores, and a sweep that reports an outage
in 15 s when idle took 119 s. A wait returns as soon as its condition holds, so patience
costs nothing when the code is right; what a test guards against (a hang, a wait for a 300 s
stream timeout) stays beyond the scaled bound.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _patience() -> float:
    raw = os.environ.get("REEL_TEST_PATIENCE", "5")
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"REEL_TEST_PATIENCE={raw!r}: expected a number >= 1") from None
    if value < 1:
        raise SystemExit(f"REEL_TEST_PATIENCE={raw!r}: expected a number >= 1")
    return value


PATIENCE = _patience()


def bound(seconds: float) -> float:
    """`seconds` on an idle machine, as this run allows it."""
    return seconds * PATIENCE


def wait_for(check: Callable[[], T | None], timeout: float, what: str | Callable[[], str],
             retry_on: tuple[type[BaseException], ...] = (AssertionError, KeyError)) -> T:
    """Poll `check` until it returns something true, for `bound(timeout)` seconds.

    `what` may be a callable, read only on failure (a log tail, as it is when the wait ends).
    Exceptions in `retry_on` count as "not yet"; the last one is shown on failure.
    """
    limit = bound(timeout)
    deadline = time.monotonic() + limit
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    described = what() if callable(what) else what
    raise AssertionError(f"timed out after {limit:.0f}s waiting for {described}; last: {last!r}")


def holds(check: Callable[[], object], seconds: float, what: str | Callable[[], str]) -> None:
    """`check` stays true for `seconds`, polled: for what must not happen (a write while
    suspended, a second replica running), failing at the first look where it does.

    Not scaled by patience: a slower run makes what is guarded against come later, so the
    window can only miss it there, never fail for nothing; scaling would lengthen every run.
    """
    deadline = time.monotonic() + seconds
    while True:
        if not check():
            described = what() if callable(what) else what
            raise AssertionError(f"{described} stopped holding within {seconds:g}s")
        if time.monotonic() >= deadline:
            return
        time.sleep(0.2)
