"""Threads of the endpoint's own for its blocking calls to other services (TokenReview,
SubjectAccessReview, the token keys): a flood of requests queues here, never on the event
loop's default executor where the runtime's heartbeats and sweeps run. Past a short queue
the caller is told to come back (503) at once; each call waits at most `timeout` seconds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from reel_reconciler.api.errors import unavailable

T = TypeVar("T")

WORKERS = 4
MAX_QUEUED = 32
"""Calls submitted and not finished, the running ones included; a call abandoned at its
timeout still counts until its thread is free."""
TIMEOUT = 8.0
"""The whole call; each client also has a socket timeout below this."""
BUSY_RETRY_AFTER = 2.0


class Outbound:
    def __init__(self, workers: int = WORKERS, max_queued: int = MAX_QUEUED,
                 timeout: float = TIMEOUT) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="reel-api-outbound")
        self.max_queued = max_queued
        self.timeout = timeout
        self._lock = threading.Lock()
        self._queued = 0

    @property
    def queued(self) -> int:
        return self._queued

    async def run(self, call: Callable[[], T]) -> T:
        """`call()` on the endpoint's threads; raises ApiError 503 when too many calls are
        queued or this one outlasts the timeout."""
        with self._lock:
            if self._queued >= self.max_queued:
                raise unavailable("too many calls to other services are waiting",
                                  BUSY_RETRY_AFTER, "busy")
            self._queued += 1
        try:
            future = self._pool.submit(call)
        except RuntimeError:  # shut down
            self._done()
            raise
        future.add_done_callback(lambda _: self._done())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError as exc:
            raise unavailable(f"a call to another service took more than {self.timeout}s",
                              BUSY_RETRY_AFTER, "timeout") from exc

    def _done(self) -> None:
        with self._lock:
            self._queued -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
