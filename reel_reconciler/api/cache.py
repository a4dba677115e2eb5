"""A small memory of recent answers: at most `max_entries`, each for `ttl` seconds, the least
recently used dropped first. Used on the event loop only (no lock)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    def __init__(self, ttl: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        now = self._clock()
        self._entries[key] = (now + min(self.ttl, self.ttl if ttl is None else ttl), value)
        self._entries.move_to_end(key)
        while self._entries:
            oldest, (expires, _) = next(iter(self._entries.items()))
            if expires > now and len(self._entries) <= self.max_entries:
                break
            del self._entries[oldest]
