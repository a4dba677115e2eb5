"""The coordinator of a distributed sweep round (docs/design.md, Distributed rounds): one
message per range to the work topic, then the ranges' result documents read until every
range has reported or the round's bound has passed, added up into one `SweepResult` that is
recorded and returned exactly as a local sweep's.

A timed round is a delta round, as locally: the coordinator reads each range's schedule
(not its fingerprints) to choose, by the same rule, which ranges are passed in full, and does the
round's indexed pass itself once the ranges reported. A forced round passes every range in
full, and its ranges' projects per user give the next split points, as a forced local
sweep's do.

Results are read by document id, at a pace that slows as the round goes on (a round of
64 ranges over 30 minutes costs a few thousand document reads, against millions for the
sweep itself). Each range's age is exported from the moment it was first published, so a
range that never reports shows as old, not as missing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from reel_reconciler import defaults, metrics
from reel_reconciler.engine import Engine, SweepResult, Trigger, sweep
from reel_reconciler.engine.reconcile import HALTED
from reel_reconciler.engine.sweep.delta import Schedule, round_passes, round_rest
from reel_reconciler.engine.sweep.ranges import KeyRange, SweepPlan, merged_splits
from reel_reconciler.engine.sweep.result import RangeSummary
from reel_reconciler.engine.sweep.work import RangeResult, WorkItem, call_off_id, spec_snapshot
from reel_reconciler.model import ReconcilerId
from reel_reconciler.spec import ReconcilerSpec
from reel_reconciler.stores import Conflict, StoreError
from reel_reconciler.stores.work import WorkTopic

log = logging.getLogger(__name__)

FIRST_POLL = 0.5
LAST_POLL = 15.0
"""Seconds between two reads of a round's results: from the first to the longest."""


class RoundCoordinator:
    """Runs the rounds of one reconciler; remembers when each range last reported."""

    def __init__(self, topic: WorkTopic, reconciler: ReconcilerId) -> None:
        self.topic = topic
        self.reconciler = reconciler
        self.label = reconciler.label
        self.swept_at: dict[int, float] = {}
        """When each range (by index) last reported, or was first published."""

    def run(self, engine: Engine, spec: ReconcilerSpec, generation: int, plan: SweepPlan,
            trigger: Trigger) -> SweepResult:
        """One round, aborted (as a local sweep is) when the stores or the topic fail."""
        started = time.monotonic()
        ranges = plan.key_ranges()
        schedule = None
        full = [True] * len(ranges)
        if trigger is Trigger.SWEEP:  # timed: a delta round; forced rounds stay full
            schedule = Schedule(engine.clock(), spec.sweep.interval, spec.sweep.full_every)
            full = round_passes(engine, schedule, ranges, self.label)
        # A delta round's counts are its ranges' added up: a worker passes in full a range
        # whose fingerprints it found gone since.
        result = SweepResult(dry_run=spec.observe, delta=None if schedule is None else {
            "ranges": 0, "fullRanges": 0, "usersRead": 0, "indexed": 0})
        round_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        snapshot = spec_snapshot(spec)
        items = [WorkItem(self.reconciler, generation, snapshot, round_id, index, len(ranges),
                          key_range, schedule, full[index])
                 for index, key_range in enumerate(ranges)]
        fields = {"reconciler": self.label, "round": round_id, "ranges": len(items)}
        metrics.SWEEP_INTERVAL_SECONDS.labels(self.label).set(
            spec.sweep.interval.total_seconds())
        try:
            total = engine.firestore.count_projects()
        except StoreError as exc:
            result.aborted = f"stopped early: {exc}"
            result.record(self.reconciler)
            return result
        self._track(ranges)
        try:
            self.topic.publish([(item.body(), item.attributes()) for item in items])
        except Exception as exc:  # the client's own errors: a round not started is aborted
            result.aborted = f"stopped early: the work topic refused the round: {exc}"
            result.record(self.reconciler)
            return result
        log.info("sweep round published", extra=fields)
        bound = max(spec.sweep.interval, defaults.ROUND_MIN_WAIT).total_seconds()
        reported = self._wait(engine, items, bound)
        if engine.halted.is_set():
            self._call_off(engine, round_id, fields)
        summaries = []
        for item in items:
            outcome = reported.get(item.index)
            if outcome is not None:
                outcome.add_to(result)
                summaries.append(RangeSummary(item.key_range, outcome.scanned,
                                              outcome.seconds))
        result.ranges = summaries if len(items) > 1 else []
        missing = len(items) - len(reported)
        if engine.halted.is_set():
            result.aborted = HALTED
        elif missing and result.aborted is None:
            result.aborted = (f"stopped early: {missing} of {len(items)} ranges not reported "
                              f"within {bound:g}s")
        if result.aborted is None:
            self._rest(engine, spec.observe, trigger, schedule, total, result)
        if result.aborted is None and schedule is None and len(items) > 1:
            result.splits = round_splits([reported[item.index] for item in items], plan.ranges)
            result.splits_for = plan.ranges if result.splits else 0
        result.duration_seconds = time.monotonic() - started
        result.record(self.reconciler)
        log.info("sweep round finished", extra={
            **fields, "reported": len(reported), "scanned": result.scanned,
            "aborted": result.aborted})
        return result

    @staticmethod
    def _rest(engine: Engine, dry_run: bool, trigger: Trigger, schedule: Schedule | None,
              total: int, result: SweepResult) -> None:
        """What the round does once its ranges reported: a delta round's indexed pass and
        counts by status; the projects without a usable userId when every range was full."""
        if schedule is not None:
            every_full = result.complete
            rest = round_rest(engine, schedule, dry_run, trigger, every_full,
                              userless=every_full and total > result.scanned)
            _absorb(result, rest)
            result.by_status = rest.by_status
        elif total > result.scanned:
            _absorb(result, sweep(engine, dry_run, trigger, keep_reports=False,
                                  plan=SweepPlan.of_share([], remainder=True)))

    def _call_off(self, engine: Engine, round_id: str, fields: Mapping[str, object]) -> None:
        """Tell the workers that hold ranges of this round to stop at their next user: the
        reconciler stopped, so the spec the round carries is no longer the one to enforce."""
        body = {"reconciler": self.label, "round": round_id,
                "expireAt": datetime.now(UTC) + defaults.ROUND_RESULTS_KEPT}
        try:
            engine.firestore.create_round_document(defaults.ROUNDS_COLLECTION,
                                                   call_off_id(round_id), body)
        except Conflict:
            pass
        except StoreError as exc:
            log.warning("sweep round not called off: its workers finish their ranges",
                        extra={**fields, "error": str(exc)})
            return
        log.info("sweep round called off", extra=dict(fields))

    def _track(self, ranges: list[KeyRange]) -> None:
        """Ranges of this round count their age from now unless seen before; ranges of an
        earlier, finer cut leave the metric."""
        now = time.time()
        for index in range(len(ranges)):
            if index not in self.swept_at:
                self.swept_at[index] = now
                metrics.RANGE_SWEEP_AGE.labels(self.label, str(index)).set_function(
                    partial(self._age, index))
        for index in [i for i in self.swept_at if i >= len(ranges)]:
            del self.swept_at[index]
            metrics.RANGE_SWEEP_AGE.remove(self.label, str(index))

    def _age(self, index: int) -> float:
        return time.time() - self.swept_at.get(index, time.time())

    def _wait(self, engine: Engine, items: list[WorkItem], bound: float
              ) -> dict[int, RangeResult]:
        """Each range's result as it comes, until all are in, the bound passes or the
        reconciler stops."""
        deadline = time.monotonic() + bound
        pending = {item.result_id: item for item in items}
        reported: dict[int, RangeResult] = {}
        pause = FIRST_POLL
        backlog = metrics.ROUND_BACKLOG.labels(self.label)
        while True:
            backlog.set(len(pending))
            if not pending or engine.halted.is_set():
                return reported
            try:
                found = engine.firestore.round_documents(defaults.ROUNDS_COLLECTION,
                                                       list(pending))
            except StoreError as exc:
                log.warning("sweep round results not read", extra={
                    "reconciler": self.label, "error": str(exc)})
                found = {}
            for doc_id, doc in found.items():
                item = pending.pop(doc_id)
                try:
                    reported[item.index] = RangeResult.from_fields(doc.data or {})
                except (KeyError, TypeError, ValueError) as exc:
                    log.error("sweep range result unreadable", extra={
                        "reconciler": self.label, "document": doc_id, "error": str(exc)})
                    continue
                self.swept_at[item.index] = _finished(doc.data or {})
            if not pending or time.monotonic() >= deadline:
                backlog.set(len(pending))
                return reported
            engine.halted.wait(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(LAST_POLL, pause * 1.5)


def _finished(data: Mapping[str, Any]) -> float:
    at = data.get("finishedAt")
    return at.timestamp() if isinstance(at, datetime) else time.time()


def round_splits(outcomes: list[RangeResult], count: int) -> list[str]:
    """The next split points from every range's projects per user, merged in key order as a
    local sweep merges its ranges' (the same points from the same counts); none when a range
    sent no profile (a worker of an earlier version)."""
    profiles = [outcome.profile for outcome in outcomes]
    if any(profile is None for profile in profiles):
        return []
    return merged_splits(filter(None, profiles), count)


def _absorb(result: SweepResult, other: SweepResult) -> None:
    """Add the pass over projects without a usable userId into the round's result."""
    RangeResult.from_sweep(-1, other, "coordinator").add_to(result)
