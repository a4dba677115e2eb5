"""One backoff rule for everything that retries on its own: the work queue's items, the
listeners' restarts, a reconciler that cannot connect."""

from __future__ import annotations


def backoff(failures: int, base: float, ceiling: float) -> float:
    """Seconds to wait after `failures` failures in a row (1 or more): doubling from `base`,
    capped at `ceiling`, as client-go's workqueue does."""
    return float(min(base * 2 ** (max(failures, 1) - 1), ceiling))
