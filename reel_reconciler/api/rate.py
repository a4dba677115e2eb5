"""Rate limits per key (a client address, a caller) in bounded memory.

Each key is one number, the GCRA's "theoretical arrival time": a limit of N per period lets
a burst of N through, then one request every period/N. A key whose time has passed is a
full bucket and is forgotten; past `max_keys` the least recently seen key is dropped, so an
attacker with a million addresses costs a bounded amount of memory, and each request does a
constant amount of work (no pass over every key)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem

from reel_reconciler.api.errors import ApiError

MAX_KEYS = 50_000
"""About 12 MB per limit at most (some 240 bytes a key)."""


@dataclass(frozen=True)
class Rate:
    amount: int
    period: float
    """Seconds."""
    text: str

    @classmethod
    def of(cls, item: RateLimitItem) -> Rate:
        return cls(item.amount, float(item.get_expiry()), str(item))

    @property
    def interval(self) -> float:
        return self.period / self.amount


class RateLimit:
    def __init__(self, rate: Rate, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._clock = clock
        self._due: OrderedDict[str, float] = OrderedDict()
        """Key to its theoretical arrival time, least recently seen first."""

    def __len__(self) -> int:
        return len(self._due)

    def check(self, key: str, who: str = "this caller") -> None:
        """Count one request of `key`; raises 429 past the limit (not counted then)."""
        now = self._clock()
        self._forget_expired(now)
        interval = self.rate.interval
        due = max(self._due.get(key, now), now)
        wait = due - (self.rate.amount - 1) * interval - now
        if wait > 0:
            self._due.move_to_end(key)
            seconds = max(1, math.ceil(wait))
            raise ApiError(429, "rate_limited",
                           f"more than {self.rate.text} requests from {who}: retry in "
                           f"{seconds}s", seconds, reason="rate_limited")
        self._due[key] = due + interval
        self._due.move_to_end(key)
        while len(self._due) > self.max_keys:
            self._due.popitem(last=False)

    def refund(self, key: str) -> None:
        """Give back one request counted by `check`: it turned out not to be one this limit
        is about (a failed-login limit and a caller who logged in)."""
        due = self._due.get(key)
        if due is not None:
            self._due[key] = due - self.rate.interval

    def _forget_expired(self, now: float) -> None:
        """Drop least recently seen keys whose bucket is full again: amortized constant."""
        while self._due:
            key, due = next(iter(self._due.items()))
            if due > now:
                return
            del self._due[key]
