"""One running reconciler: its engine, work queue, listeners and timers, started and stopped
as a unit. The operator runs one per ReelReconciler; `reel-reconciler watch` runs one alone.
Blocking Google clients run in threads; the event loop only schedules."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial

from reel_reconciler import metrics
from reel_reconciler.config import Settings
from reel_reconciler.engine import (
    Engine,
    StaleCleanup,
    SweepResult,
    Trigger,
    sweep,
)
from reel_reconciler.engine.breaker import BreakerState
from reel_reconciler.engine.connect import connect
from reel_reconciler.engine.listener import ListenerSet, WatchdogSettings, safe_beat
from reel_reconciler.engine.notification import ChangeTimes, route
from reel_reconciler.engine.queue import WorkQueue
from reel_reconciler.engine.stale import StaleTimer
from reel_reconciler.engine.sweep.delta import Schedule, delta_sweep
from reel_reconciler.engine.sweep.ranges import SweepPlan
from reel_reconciler.model import Action, Location, ReconcilerId, Report, RestartReason
from reel_reconciler.runtime.hooks import Hooks
from reel_reconciler.runtime.liveness import Loop, forget_loop, watch_loop
from reel_reconciler.runtime.registry import RUNTIMES, STOPPING, drained
from reel_reconciler.runtime.rounds import RoundCoordinator
from reel_reconciler.runtime.timers import every
from reel_reconciler.runtime.worker import SweepWorker
from reel_reconciler.spec import ReconcilerSpec
from reel_reconciler.stores import StoreError
from reel_reconciler.stores.subscription import Subscription
from reel_reconciler.stores.work import WorkTopic

log = logging.getLogger(__name__)

MAX_BATCH = 100
"""Projects one worker reconciles together (one batched read of their documents)."""
HOLD_MARGIN = 0.25
"""Seconds past the end of a hold before the project is looked at again."""
DRAIN_TIMEOUT = 60.0
"""Seconds a stopping runtime waits for a batch in flight or a sweep to reach its next user
(writes have ended already: this bounds only how long threads may linger)."""
LIVENESS_BEATS = 10
"""Heartbeat intervals without a watchdog tick (beyond one slow heartbeat write) before the
process counts as hung."""

Connector = Callable[[Settings, ReconcilerId], Engine]
"""Builds a reconciler's engine and proves its services answer (raises ConfigError)."""


class ReconcilerRuntime:
    def __init__(self, reconciler: ReconcilerId, spec: ReconcilerSpec, *,
                 settings: Settings | None = None, connector: Connector = connect,
                 hooks: Hooks | None = None, generation: int | None = None,
                 splits: dict[int, tuple[str, ...]] | None = None) -> None:
        self.reconciler = reconciler
        self.key = reconciler.key
        self.label = reconciler.label
        self.spec = spec
        self.settings = settings
        """Engine settings; None: from the spec (the environment fills in the rest)."""
        self.connector = connector
        self.hooks = hooks or Hooks()
        self.engine: Engine | None = None
        self.queue: WorkQueue | None = None
        self.listeners: ListenerSet | None = None
        self.started_at = time.time()
        self.last_sweep_at: float | None = None
        self.sweep_lock = asyncio.Lock()
        self.splits: dict[int, tuple[str, ...]] = dict(splits or {})
        """The last ranged sweep's split points, by its number of ranges (a new runtime
        starts from those its owner kept, such as the operator's status)."""
        self.stale_timer = StaleTimer()
        """When the stale-job timer last queried every active job (its safety net)."""
        self.changes = ChangeTimes()
        """When notified changes happened, for the time to heal of the projects queued."""
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        """Timers and forced sweeps: what a stop waits for."""
        self._drain: asyncio.Task[None] | None = None
        self.breaker_state = BreakerState()
        """As of the last watchdog tick (a trip on a worker shows at the next one)."""
        self._liveness: Loop | None = None
        """The watchdog timer's ticks: the liveness probe fails when they stop."""
        self.generation = int(time.time() * 1000) if generation is None else generation
        """Carried by distributed rounds' messages: workers drop those of older ones."""
        self.coordinator: RoundCoordinator | None = None
        self.worker: SweepWorker | None = None
        """With spec.sweep.distribution: rounds go through Pub/Sub, and this process sweeps
        ranges of them too."""

    async def start(self) -> None:
        """Connect (raises ConfigError), then start the queue, the listeners and the timers.
        A runtime of the same name still stopping is let finish first: its last act forgets
        the metric series this one is about to create."""
        previous = STOPPING.get(self.key)
        if previous is not None:
            await asyncio.shield(previous)
        settings = self.settings or self.spec.settings()
        engine = await asyncio.to_thread(self.connector, settings, self.reconciler)
        if self._stopping.is_set():
            engine.halt()
            return
        self.breaker_state = engine.breaker.state
        metrics.prime(self.label)
        engine.recorder.on_flapping = partial(self._flapping, asyncio.get_running_loop())
        queue = WorkQueue(self._handle, concurrency=self.spec.concurrency,
                          rate_per_second=self.spec.rate_limit, max_batch=MAX_BATCH,
                          reconciler=self.reconciler)
        queue.start()
        timing = self.spec.listeners
        notifications = self.spec.storage.notifications
        subscription = None if notifications is None else Subscription(
            notifications.subscription, partial(self._notified, engine.policy.location, queue))
        listeners = ListenerSet(
            engine.firestore, queue.add_threadsafe, self.reconciler,
            heartbeat_collection=timing.heartbeat_collection,
            settings=WatchdogSettings(
                heartbeat_interval=timing.heartbeat_interval.total_seconds(),
                silence_threshold=timing.silence_threshold.total_seconds(),
                resubscribe_every=timing.resubscribe_interval.total_seconds()),
            notifications=subscription)
        # Owned before the first await below, so that a stop meanwhile closes them too.
        self.engine, self.queue, self.listeners = engine, queue, listeners
        await asyncio.to_thread(listeners.start)
        if self._stopping.is_set():  # stopped while the listeners started: close them again
            await asyncio.shield(asyncio.to_thread(listeners.stop))
            return
        distribution = self.spec.sweep.distribution
        if distribution is not None:
            self.coordinator = RoundCoordinator(WorkTopic(distribution.topic), self.reconciler)
            self.worker = SweepWorker(distribution.subscription, self.spec.sweep.parallel,
                                      connector=self.connector)
            await asyncio.to_thread(self.worker.start)
        RUNTIMES[self.key] = self
        beat = timing.heartbeat_interval.total_seconds()
        self._liveness = watch_loop(
            f"{self.key} watchdog",
            LIVENESS_BEATS * beat + settings.request_timeout + settings.retry_deadline)
        timer = partial(every, self._stopping, reconciler=self.reconciler)
        self._tasks = {
            asyncio.create_task(timer(lambda: timing.heartbeat_interval, self._watchdog,
                                      jitter=False), name=f"{self.label}-watchdog"),
            asyncio.create_task(timer(lambda: self.spec.sweep.interval, self._timed_sweep),
                                name=f"{self.label}-sweep"),
            asyncio.create_task(timer(lambda: self.spec.stale_jobs.interval,
                                      self._timed_cleanup), name=f"{self.label}-stale"),
        }
        # Shown by the runtime itself, so that `watch` exports it too; a supervisor owns
        # `wanted` while no runtime runs, and removes both series when it exits.
        metrics.presence(self.label, wanted=True, running=True)

    async def stop(self) -> None:
        """Stop: writes end at once, the rest drains. Nothing is written from the moment this
        is called (the engine is halted before the first await; a commit already sent
        finishes), the queue takes nothing more and its retry timers go, a sweep in flight
        ends at its next user, the listeners close, and the metric series are forgotten
        (but `running`, 0 from the start of the stop: presence outlives the runtime).
        The drain runs in a task of its own: a caller cancelled meanwhile (Kopf cancels a
        daemon that does not exit in time) does not cut it short."""
        if RUNTIMES.pop(self.key, None) is self:  # it ran, and runs no more from here on
            metrics.RUNNING.labels(self.label).set(0)
        self._stopping.set()
        if self._liveness is not None:
            forget_loop(self._liveness)
        if self.engine is not None:
            self.engine.halt()
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_all(), name=f"{self.label}-stop")
            STOPPING[self.key] = self._drain
            self._drain.add_done_callback(partial(drained, self.key))
        await asyncio.shield(self._drain)

    async def _drain_all(self) -> None:
        if self.queue is not None:
            await self.queue.stop(DRAIN_TIMEOUT)
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=DRAIN_TIMEOUT)
            for task in pending:
                log.warning("a timer outlived the drain: cancelled",
                            extra={"reconciler": self.label, "task": task.get_name()})
                task.cancel()
        if self.worker is not None:
            await asyncio.to_thread(self.worker.stop, DRAIN_TIMEOUT)
        if self.coordinator is not None:
            await asyncio.to_thread(self.coordinator.topic.close)
        if self.listeners is not None:
            await asyncio.to_thread(self.listeners.stop)
        metrics.forget(self.label)
        if self.engine is not None:  # a runtime that never connected has nothing to report
            log.info("reconciler stopped", extra={"reconciler": self.label})

    @property
    def stopped(self) -> bool:
        """Fully stopped: nothing of this runtime runs any more."""
        return self._drain is not None and self._drain.done()

    def request_sweep(self, on_done: Callable[[SweepResult], Awaitable[None]]) -> None:
        """A forced full sweep, run by the runtime (not by its caller, who returns at once):
        a stop ends it like a timed one. `on_done` sees its result unless a stop ended it."""
        if self._stopping.is_set():
            return
        task = asyncio.create_task(self._forced_sweep(on_done), name=f"{self.label}-forced")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forced_sweep(self, on_done: Callable[[SweepResult], Awaitable[None]]) -> None:
        try:
            result = await self.sweep(Trigger.ANNOTATION)
            if not self._stopping.is_set():
                await on_done(result)
        except Exception:
            log.exception("forced sweep failed", extra={"reconciler": self.label})

    def _notified(self, location: Location, queue: WorkQueue,
                  attributes: Mapping[str, str]) -> None:
        """A storage notification, on the subscriber's thread: its project goes to the queue
        (acked once it is there); any other message is only counted."""
        routed = route(attributes, location)
        metrics.NOTIFICATIONS_TOTAL.labels(self.label, routed.event_type,
                                           routed.outcome.value).inc()
        if routed.project_id is None:
            return
        if routed.changed_at is not None:
            self.changes.note(routed.project_id, routed.changed_at)
        queue.add_threadsafe([routed.project_id])

    def _flapping(self, loop: asyncio.AbstractEventLoop, report: Report) -> None:
        """On a reconciling thread: the owner's hook runs on the loop (an Event, for the
        operator), without holding up the batch."""
        if not self._stopping.is_set():
            asyncio.run_coroutine_threadsafe(self._tell_flapping(report), loop)

    async def _tell_flapping(self, report: Report) -> None:
        try:
            await self.hooks.on_flapping(report)
        except Exception:
            log.exception("flapping hook failed", extra={"reconciler": self.label,
                                                         "projectId": report.project_id})

    async def _watchdog(self) -> None:
        if self._liveness is not None:
            self._liveness.tick()
        await self.hooks.on_tick(await self.tick())
        await self._look_at_the_breaker()

    async def _look_at_the_breaker(self) -> None:
        """Its state as the store has it (a resume from the CLI, a trip on another replica)."""
        assert self.engine is not None
        try:
            state = await asyncio.to_thread(self.engine.breaker.load)
        except StoreError as exc:
            log.warning("breaker state not read", extra={"reconciler": self.label,
                                                         "error": str(exc)})
            return
        if state != self.breaker_state:
            self.breaker_state = state
            await self.hooks.on_breaker(state)

    async def resume_writes(self, token: str) -> None:
        """A person says the configuration is right again: destructive writes go on."""
        assert self.engine is not None
        await asyncio.to_thread(self.engine.breaker.resume, token)
        await self._look_at_the_breaker()

    async def _timed_sweep(self) -> None:
        await self.hooks.on_sweep(await self.sweep(Trigger.SWEEP))

    async def _timed_cleanup(self) -> None:
        await self.hooks.on_stale(await self.cleanup_stale_jobs())

    @property
    def healthy(self) -> bool:
        return (self.listeners is not None and self.listeners.healthy
                and (self.worker is None or self.worker.running))

    def ready(self, now: float | None = None) -> bool:
        """Listeners up and a sweep within two intervals (or none due yet)."""
        now = time.time() if now is None else now
        due = 2 * self.spec.sweep.interval.total_seconds() + 60
        last = self.last_sweep_at or self.started_at
        return self.healthy and now - last <= due

    async def tick(self) -> RestartReason | None:
        """Heartbeat and watchdog; returns why the listeners were restarted, if they were."""
        assert self.listeners is not None
        listeners = self.listeners
        await asyncio.to_thread(safe_beat, listeners)
        return await asyncio.to_thread(listeners.check)

    async def _handle(self, project_ids: list[str]) -> set[str]:
        """One batch of listener events; returns the projects to retry with backoff. A
        project held only until a window passes (settling, a stitch at work) is queued again
        when it has: nothing else would bring it back before the next sweep."""
        assert self.engine is not None
        assert self.queue is not None
        changed = self.changes.take(project_ids)
        reports = await asyncio.to_thread(self.engine.reconcile_many, project_ids,
                                          Trigger.LISTENER, self.spec.observe, changed)
        for report in reports:
            if report.action is Action.SKIPPED and report.retry_after is not None:
                if report.project_id in changed:
                    self.changes.note(report.project_id, changed[report.project_id])
                self.queue.add_after(report.project_id, report.retry_after + HOLD_MARGIN)
        return {r.project_id for r in reports if r.action in (Action.ERROR, Action.CONFLICT)}

    async def sweep(self, trigger: Trigger) -> SweepResult:
        assert self.engine is not None
        ranges = self.spec.sweep.ranges
        plan = SweepPlan(ranges, self.spec.sweep.parallel, self.splits.get(ranges, ()))
        async with self.sweep_lock:
            if self.coordinator is not None:  # timed: delta rounds there too
                result = await asyncio.to_thread(self.coordinator.run, self.engine, self.spec,
                                                 self.generation, plan, trigger)
            elif trigger is Trigger.SWEEP:  # timed: a delta round; forced sweeps stay full
                schedule = Schedule(self.engine.clock(), self.spec.sweep.interval,
                                    self.spec.sweep.full_every)
                result = await asyncio.to_thread(delta_sweep, self.engine, schedule,
                                                 self.spec.observe, trigger,
                                                 keep_reports=False, plan=plan)
            else:
                result = await asyncio.to_thread(sweep, self.engine, self.spec.observe,
                                                 trigger, keep_reports=False, plan=plan)
        if result.splits:
            self.splits = {ranges: tuple(result.splits)}
        if not result.aborted:
            self.last_sweep_at = time.time()
        return result

    async def cleanup_stale_jobs(self) -> StaleCleanup:
        """The timer's cleanup: from the jobs listener's view of the active jobs while it is
        current, with a query of them all now and then (engine.stale.StaleTimer)."""
        assert self.engine is not None
        listeners = self.listeners
        return await asyncio.to_thread(
            self.stale_timer.run, self.engine, self.spec.observe,
            lambda: None if listeners is None else listeners.active_jobs())

    async def reconcile(self, project_ids: Sequence[str], trigger: Trigger) -> list[Report]:
        engine = self.engine
        assert engine is not None
        return [await asyncio.to_thread(engine.reconcile, pid, trigger, self.spec.observe)
                for pid in project_ids]
