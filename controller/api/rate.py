"""A moving-window rate limit per caller: past it, 429 with the seconds until the window
lets the next request in."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from controller.api.errors import ApiError


class RateLimit:
    def __init__(self, item: RateLimitItem) -> None:
        self.item = item
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, key: str, who: str = "this caller") -> None:
        """Count one request of `key`; raises 429 past the limit."""
        if self._limiter.hit(self.item, key):
            return
        reset = self._limiter.get_window_stats(self.item, key).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise ApiError(429, "rate_limited",
                       f"more than {self.item} requests from {who}: retry in {wait}s", wait)
