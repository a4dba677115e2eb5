"""A stream read ahead on its own thread, so that waiting for one store overlaps with work on
the others, and a store that stops answering stops the sweep instead of hanging it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from reel_reconciler.stores import Outage

T = TypeVar("T")

_ITEM, _END, _ERROR = range(3)


class Prefetch(Generic[T]):
    """Reads `source` at most `depth` items ahead. An item that does not come within `idle`
    seconds is an outage: a server that hangs without closing the connection counts too."""

    def __init__(self, source: Iterable[T], depth: int, idle: float, what: str) -> None:
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._idle = idle
        self._what = what
        self._last: tuple[int, Any] | None = None
        self._thread = threading.Thread(target=self._pump, args=(source,), daemon=True,
                                        name=f"sweep-{what}")
        self._thread.start()

    def _pump(self, source: Iterable[T]) -> None:
        try:
            for item in source:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, who raises it
            self._put((_ERROR, exc))

    def _put(self, entry: tuple[int, Any]) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._last is None:
            try:
                kind, value = self._queue.get(timeout=self._idle)
            except queue.Empty:
                raise Outage(f"{self._what} gave nothing for {self._idle:.0f}s") from None
            if kind == _ITEM:
                item: T = value
                return item
            self._last = (kind, value)
        kind, value = self._last
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead; the thread ends at its next item."""
        self._closed.set()
