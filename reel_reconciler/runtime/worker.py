"""A sweep worker: takes ranges of distributed sweep rounds from the shared work
subscription, sweeps each with the stores and mode its message names, and reports the result
in a document of its own (docs/design.md, Distributed rounds).

Whichever process it runs in (`worker`, or a coordinating `watch`), it holds at most
`parallel` ranges, one stream per store each. It keeps one engine per reconciler, built from
the newest generation it has seen; a message of an older generation is dropped (acked), and
an engine whose reconciler moved on is halted, so that its range stops at the next user and
goes back to Pub/Sub to be dropped in turn. A stop does the same for every range held.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from reel_reconciler import defaults
from reel_reconciler.config import ConfigError, Settings
from reel_reconciler.engine import Engine, SweepResult, Trigger, sweep
from reel_reconciler.engine.connect import connect
from reel_reconciler.engine.reconcile import HALTED
from reel_reconciler.engine.sweep.delta import RangePart, delta_sweep
from reel_reconciler.engine.sweep.ranges import SweepPlan
from reel_reconciler.engine.sweep.work import RangeResult, WorkItem
from reel_reconciler.model import ReconcilerId
from reel_reconciler.stores import Conflict, StoreError
from reel_reconciler.stores.work import Outcome, WorkPull

log = logging.getLogger(__name__)

Connector = Callable[[Settings, ReconcilerId], Engine]


CALL_OFF_POLL = 2.0
"""Seconds between two looks at whether the rounds of the ranges held were called off: with
a user's batch after it, a stop reaches every worker within 5 s."""


def worker_name() -> str:
    """Who swept a range, in its result document: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class SweepWorker:
    def __init__(self, subscription: str, parallel: int, *,
                 connector: Connector = connect) -> None:
        self.pull = WorkPull(subscription, self.handle, parallel)
        self.connector = connector
        self.name = worker_name()
        self._engines: dict[str, tuple[int, Engine]] = {}
        self._newest: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._busy = 0
        self._idle = threading.Condition(self._lock)
        self._held: dict[str, tuple[WorkItem, Engine]] = {}
        """The ranges being swept, by result id."""
        self._called_off: set[str] = set()
        """Rounds whose coordinator stopped: their ranges are dropped, not swept."""
        self._watch = threading.Thread(target=self._watch_call_offs, name="work-call-offs",
                                       daemon=True)

    def start(self) -> None:
        self.pull.start()
        self._watch.start()

    @property
    def running(self) -> bool:
        return self.pull.running and not self._stopping.is_set()

    def stop(self, timeout: float = 60.0) -> None:
        """Halt every range held (each stops at its next user and goes back to Pub/Sub),
        wait for them up to `timeout`, then stop pulling."""
        self._stopping.set()
        with self._lock:
            engines = [engine for _, engine in self._engines.values()]
        for engine in engines:
            engine.halt()
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
        self.pull.stop()

    def handle(self, data: bytes, attributes: dict[str, str]) -> Outcome:
        """One message, on a thread of the subscriber's pool."""
        if self._stopping.is_set():
            return Outcome.AGAIN
        try:
            item = WorkItem.parse(data)
        except ValueError as exc:
            log.error(f"work message dropped: {exc}", extra={
                "subscription": self.pull.path, "attributes": attributes})
            return Outcome.DONE
        fields = {"reconciler": item.reconciler.label, "round": item.round_id,
                  "range": item.index, "generation": item.generation}
        engine = self._engine_for(item, fields)
        if engine is None:
            return Outcome.DONE
        if self._is_called_off(engine, item):
            log.info("sweep range of a called-off round dropped", extra=fields)
            return Outcome.DONE
        with self._lock:
            self._busy += 1
            self._held[item.result_id] = (item, engine)
        try:
            return self._sweep(engine, item, fields)
        finally:
            with self._idle:
                self._held.pop(item.result_id, None)
                self._busy -= 1
                self._idle.notify_all()

    def _is_called_off(self, engine: Engine, item: WorkItem) -> bool:
        """Known called off, or its call-off document exists (one read per range taken)."""
        if item.round_id in self._called_off:
            return True
        try:
            found = engine.firestore.round_documents(defaults.ROUNDS_COLLECTION, [item.stop_id])
        except StoreError:
            return False  # the sweep meets the same outage and hands the range back
        if found:
            self._called_off.add(item.round_id)
        return bool(found)

    def _watch_call_offs(self) -> None:
        """Every CALL_OFF_POLL seconds, whether a round of a range held was called off; if
        so, halt the engine sweeping it: its writes end at once, the range at its next user."""
        while not self._stopping.wait(CALL_OFF_POLL):
            with self._lock:
                held = list(self._held.values())
            by_engine: dict[int, tuple[Engine, set[str]]] = {}
            for item, engine in held:
                by_engine.setdefault(id(engine), (engine, set()))[1].add(item.stop_id)
            for engine, stop_ids in by_engine.values():
                try:
                    found = engine.firestore.round_documents(defaults.ROUNDS_COLLECTION,
                                                             sorted(stop_ids))
                except StoreError as exc:
                    log.warning("call-offs not read", extra={"error": str(exc)})
                    continue
                if found:
                    self._call_off(engine, {item.round_id for item, held_by in held
                                            if held_by is engine and item.stop_id in found})

    def _call_off(self, engine: Engine, rounds: set[str]) -> None:
        with self._lock:
            self._called_off.update(rounds)
            for label, (_, held) in list(self._engines.items()):
                if held is engine:
                    del self._engines[label]
        engine.halt()
        log.info("sweep round called off: its ranges stop", extra={"rounds": sorted(rounds)})

    def _engine_for(self, item: WorkItem, fields: dict[str, object]) -> Engine | None:
        """The reconciler's engine at the message's generation; None: the message was
        dropped (stale) or answered (a spec or store that cannot be used)."""
        label = item.reconciler.label
        with self._lock:
            newest = self._newest.get(label, -1)
            if item.generation < newest:
                log.info("stale sweep range dropped", extra={**fields, "newest": newest})
                return None
            self._newest[label] = item.generation
            held = self._engines.get(label)
            if held is not None and held[0] == item.generation:
                return held[1]
            if held is not None:
                held[1].halt()
            try:
                engine = self.connector(item.parsed_spec().settings(), item.reconciler)
            except ConfigError as exc:  # acked: the coordinator's round shows it incomplete
                log.error("sweep range refused", extra={**fields, "error": str(exc)})
                engine = None
            if engine is None or self._stopping.is_set():
                self._engines.pop(label, None)
            else:
                self._engines[label] = (item.generation, engine)
        return engine

    def _sweep(self, engine: Engine, item: WorkItem, fields: dict[str, object]) -> Outcome:
        log.info("sweep range started", extra={**fields, "keyRange": str(item.key_range),
                                                "full": item.full})
        plan = SweepPlan.of_share([item.key_range])
        if item.schedule is None:
            result = sweep(engine, dry_run=item.observe, trigger=Trigger.SWEEP,
                           keep_reports=False, plan=plan)
        else:  # the local delta round's code, on this one range
            result = delta_sweep(engine, item.schedule, item.observe, Trigger.SWEEP,
                                 keep_reports=False, plan=plan,
                                 part=RangePart(item.index, item.count, item.full))
        if item.round_id in self._called_off:
            log.info("sweep range called off", extra={**fields, "scanned": result.scanned})
            return Outcome.DONE
        if result.aborted == HALTED or engine.halted.is_set():
            log.info("sweep range handed back", extra=fields)
            return Outcome.AGAIN
        self._report(engine, item, result, fields)
        log.info("sweep range finished", extra={
            **fields, "scanned": result.scanned, "actions": result.counts(),
            "durationSeconds": round(result.duration_seconds, 3), "aborted": result.aborted,
            "delta": result.delta})
        return Outcome.DONE

    def _report(self, engine: Engine, item: WorkItem, result: SweepResult,
                fields: dict[str, object]) -> None:
        """The range's result document, created only if none exists: a range swept twice
        (redelivered after a slow ack) keeps its first result. A failed write raises, so
        that the message is nacked and the range swept again."""
        body = {**RangeResult.from_sweep(item.index, result, self.name).fields(item),
                "expireAt": datetime.now(UTC) + defaults.ROUND_RESULTS_KEPT}
        try:
            engine.firestore.create_round_document(defaults.ROUNDS_COLLECTION,
                                                   item.result_id, body)
        except Conflict:
            log.info("sweep range already reported", extra=fields)
