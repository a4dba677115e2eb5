"""The work queue between triggers and the engine: deduplicating, rate-limited, bounded
concurrency, and exponential backoff per item that keeps failing (like client-go's workqueue).

A worker takes every item waiting, up to `max_batch`, at once: a burst of listener events
becomes a few batched reads instead of one read per project (Engine.reconcile_many)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection

from aiolimiter import AsyncLimiter

from reel_reconciler import metrics
from reel_reconciler.backoff import backoff
from reel_reconciler.model.identity import ReconcilerId

log = logging.getLogger(__name__)

Handler = Callable[[list[str]], Awaitable[Collection[str]]]
"""Processes a batch of items; returns those to retry later (error, conflict)."""


class WorkQueue:
    """Items waiting are kept once; an item added while it is being processed runs again after.

    Listener callbacks run on Google's threads: they call `add_threadsafe`, never the engine.
    """

    def __init__(self, handler: Handler, *, concurrency: int, rate_per_second: float,
                 max_batch: int, backoff_base: float = 1.0, backoff_max: float = 300.0,
                 reconciler: ReconcilerId) -> None:
        self._handler = handler
        self._concurrency = concurrency
        # The bucket holds a second's worth, at least one item (a rate below 1/s spreads it).
        capacity = max(rate_per_second, 1.0)
        self._limiter = AsyncLimiter(max_rate=capacity, time_period=capacity / rate_per_second)
        self._max_batch = max(1, min(max_batch, int(capacity)))
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._reconciler = reconciler.label
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._waiting: set[str] = set()
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self._failures: dict[str, int] = {}
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[Collection[str]]] = set()
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def depth(self) -> int:
        return len(self._waiting)

    def add(self, item: str) -> None:
        """Enqueue unless already waiting; if being processed, process again afterwards."""
        if self._closed:
            return
        timer = self._retry_timers.pop(item, None)
        if timer is not None:
            timer.cancel()
        if item in self._active:
            self._dirty.add(item)
            return
        if item in self._waiting:
            return
        self._waiting.add(item)
        self._idle.clear()
        self._queue.put_nowait(item)
        self._publish_depth()

    def add_threadsafe(self, items: list[str]) -> None:
        """For callbacks on foreign threads (Firestore listeners)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for item in items:
            loop.call_soon_threadsafe(self.add, item)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._workers = [asyncio.create_task(self._work(), name=f"reconcile-worker-{i}")
                         for i in range(self._concurrency)]

    async def stop(self, drain_timeout: float = 60.0) -> None:
        """Take nothing more, cancel every retry timer, and wait for the batches in flight (a
        write is never cut in half) up to `drain_timeout` seconds. Completes even when the
        owner is cancelled (the runtime's stop shields it), so that no worker or timer of a
        stopped queue is left behind."""
        self._closed = True
        for timer in self._retry_timers.values():
            timer.cancel()
        self._retry_timers.clear()
        for worker in self._workers:
            worker.cancel()
        workers, self._workers = self._workers, []
        pending = [*workers, *self._running]
        if pending:
            await asyncio.wait(pending, timeout=drain_timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        """Workers and batches still running (0 once a stop has drained)."""
        return sum(not task.done() for task in (*self._workers, *self._running))

    async def wait_idle(self) -> None:
        """Wait until nothing is waiting or in flight; a caller bounds it with a timeout of
        its own (asyncio.timeout or wait_for)."""
        await self._idle.wait()

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._waiting.difference_update(batch)
            self._active.update(batch)
            self._publish_depth()
            try:
                await self._limiter.acquire(len(batch))
                run = asyncio.ensure_future(self._run(batch))
                self._running.add(run)
                run.add_done_callback(self._running.discard)
                retry = await asyncio.shield(run)
            finally:
                self._active.difference_update(batch)
                for _ in batch:
                    self._queue.task_done()
            for item in batch:
                if item in retry:
                    self._schedule_retry(item)
                else:
                    self._failures.pop(item, None)
                if item in self._dirty:
                    self._dirty.discard(item)
                    self.add(item)
            if not self._waiting and not self._active and not self._retry_timers:
                self._idle.set()

    async def _run(self, batch: list[str]) -> Collection[str]:
        try:
            return await self._handler(batch)
        except Exception:
            log.exception("work items failed", extra={"projectIds": batch})
            return set(batch)

    def _schedule_retry(self, item: str) -> None:
        if self._closed:
            return
        failures = self._failures.get(item, 0) + 1
        self._failures[item] = failures
        delay = backoff(failures, self._backoff_base, self._backoff_max)
        assert self._loop is not None
        self._retry_timers[item] = self._loop.call_later(delay, self._retry, item)
        log.info("retry scheduled", extra={"projectId": item, "failures": failures,
                                           "delaySeconds": delay})

    def add_after(self, item: str, delay: float) -> None:
        """Queue `item` again in `delay` seconds: a hold that ends by itself, not a failure
        (no backoff). An earlier timer for the item stands."""
        if self._closed:
            return
        assert self._loop is not None
        timer = self._retry_timers.get(item)
        if timer is not None:
            if timer.when() <= self._loop.time() + delay:
                return
            timer.cancel()
        self._idle.clear()
        self._retry_timers[item] = self._loop.call_later(delay, self._retry, item)

    def _retry(self, item: str) -> None:
        self._retry_timers.pop(item, None)
        self.add(item)

    def _publish_depth(self) -> None:
        metrics.QUEUE_DEPTH.labels(self._reconciler).set(len(self._waiting))
