"""One running ReelReconciler: its engine, work queue and listeners, started and stopped as a
unit. Blocking Google clients run in threads; the event loop only schedules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from controller import metrics
from controller.config import ReconcilerSpec, Settings
from controller.engine import Engine, StaleCleanup, SweepResult, Trigger, cleanup_stale_jobs, sweep
from controller.engine.connect import connect
from controller.engine.listener import ListenerSet, WatchdogSettings, safe_beat
from controller.engine.queue import WorkQueue
from controller.model import Action, Report

MAX_BATCH = 100
"""Projects one worker reconciles together (one batched read of their documents)."""

RUNTIMES: dict[str, ReconcilerRuntime] = {}
"""Every started runtime of this process, for the readiness endpoint."""


Connector = Callable[[Settings, str], Engine]
"""Builds a reconciler's engine and proves its services answer (raises ConfigError)."""


class ReconcilerRuntime:
    def __init__(self, namespace: str, name: str, spec: ReconcilerSpec,
                 connector: Connector = connect) -> None:
        self.connector = connector
        self.key = f"{namespace}/{name}"
        self.label = f"{namespace}.{name}"
        self.spec = spec
        self.engine: Engine | None = None
        self.queue: WorkQueue | None = None
        self.listeners: ListenerSet | None = None
        self.started_at = time.time()
        self.last_sweep_at: float | None = None
        self.sweep_lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect (raises ConfigError), then start the queue and the listeners."""
        engine = await asyncio.to_thread(self.connector, self.spec.settings(), self.label)
        metrics.prime(self.label)
        queue = WorkQueue(self._handle, concurrency=self.spec.concurrency,
                          rate_per_second=self.spec.rate_limit, max_batch=MAX_BATCH,
                          reconciler=self.label)
        queue.start()
        timing = self.spec.listeners
        listeners = ListenerSet(
            engine.firestore, queue.add_threadsafe, self.label,
            heartbeat_collection=timing.heartbeat_collection,
            settings=WatchdogSettings(
                heartbeat_interval=timing.heartbeat_interval.total_seconds(),
                silence_threshold=timing.silence_threshold.total_seconds(),
                resubscribe_every=timing.resubscribe_interval.total_seconds()))
        await asyncio.to_thread(listeners.start)
        self.engine, self.queue, self.listeners = engine, queue, listeners
        RUNTIMES[self.key] = self

    async def stop(self) -> None:
        """Close the listeners first, then let in-flight reconciles finish."""
        RUNTIMES.pop(self.key, None)
        if self.listeners is not None:
            await asyncio.to_thread(self.listeners.stop)
        if self.queue is not None:
            await self.queue.stop()
        metrics.forget(self.label)

    @property
    def healthy(self) -> bool:
        return self.listeners is not None and self.listeners.healthy

    def ready(self, now: float | None = None) -> bool:
        """Listeners up and a sweep within two intervals (or none due yet)."""
        now = time.time() if now is None else now
        due = 2 * self.spec.sweep.interval.total_seconds() + 60
        last = self.last_sweep_at or self.started_at
        return self.healthy and now - last <= due

    async def tick(self) -> str | None:
        """Heartbeat and watchdog; returns why the listeners were restarted, if they were."""
        assert self.listeners is not None
        listeners = self.listeners
        await asyncio.to_thread(safe_beat, listeners)
        return await asyncio.to_thread(listeners.check)

    async def _handle(self, project_ids: list[str]) -> set[str]:
        """One batch of listener events; returns the projects to retry."""
        assert self.engine is not None
        reports = await asyncio.to_thread(self.engine.reconcile_many, project_ids,
                                          Trigger.LISTENER, self.spec.observe)
        return {r.project_id for r in reports if r.action in (Action.ERROR, Action.CONFLICT)}

    async def sweep(self, trigger: Trigger) -> SweepResult:
        assert self.engine is not None
        async with self.sweep_lock:
            result = await asyncio.to_thread(sweep, self.engine, self.spec.observe, trigger,
                                             keep_reports=False)
        if not result.aborted:
            self.last_sweep_at = time.time()
        return result

    async def cleanup_stale_jobs(self) -> StaleCleanup:
        assert self.engine is not None
        return await asyncio.to_thread(cleanup_stale_jobs, self.engine, self.spec.observe)

    async def reconcile(self, project_ids: Sequence[str], trigger: Trigger) -> list[Report]:
        engine = self.engine
        assert engine is not None
        return [await asyncio.to_thread(engine.reconcile, pid, trigger, self.spec.observe)
                for pid in project_ids]
