"""The breaker on destructive corrections. A reconciler pointed at a wrong but existing bucket
sees every claimed clip as missing; without a brake it would empty every project in one sweep
or one storm of notifications. So destructive corrections (`policy.is_destructive`) spend a
budget over a sliding window, and the first one past it trips the breaker: from then on no
trigger writes anything destructive (everything else goes on) until a person resumes writes.

The tripped state lives in a Firestore document of the reconciler's own, so that a restart, a
failover or another process (`watch`, the CLI) sees it; trips and resumes are written with a
precondition, like every write of ours."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from reel_reconciler import metrics
from reel_reconciler.model.identity import ReconcilerId
from reel_reconciler.stores import Conflict, StoreError
from reel_reconciler.stores.firestore import Document

log = logging.getLogger(__name__)


class BreakerStore(Protocol):
    def breaker(self, collection: str, name: str) -> Document | None: ...

    def put_breaker(self, collection: str, name: str, fields: Mapping[str, Any],
                    read_update_time: datetime | None) -> datetime: ...


@dataclass(frozen=True)
class BreakerState:
    tripped: bool = False
    reason: str | None = None
    resumed_token: str | None = None
    """The token of the last `resume-writes`, echoed to status."""

    @classmethod
    def of(cls, doc: Document | None) -> BreakerState:
        data = (doc.data if doc is not None else None) or {}
        reason, token = data.get("reason"), data.get("resumedToken")
        return cls(tripped=data.get("tripped") is True,
                   reason=reason if isinstance(reason, str) else None,
                   resumed_token=token if isinstance(token, str) else None)


@dataclass(frozen=True)
class Suspicion:
    """Why every destructive correction is suspect for now, and how to ask whether it still
    is."""

    reason: str
    holds: Callable[[], bool]


class Breaker:
    """One reconciler's breaker. Thread-safe: the sweep's pool, the queue's workers and the
    notification path all ask it."""

    def __init__(self, store: BreakerStore, collection: str, reconciler: ReconcilerId, budget: int,
                 window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.collection, self.reconciler = store, collection, reconciler
        self._label = reconciler.label
        self.budget, self.window, self.clock = budget, window, clock
        self.state = BreakerState()
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self._suspicion: Suspicion | None = None
        self._read_time: datetime | None = None
        self._unsaved = False
        """Tripped here, not yet in the document (a failed write): the next load retries."""

    def load(self) -> BreakerState:
        """Adopt the document's state (a resume from another process, a trip from another
        replica); a trip of ours not yet saved is saved instead. Raises StoreError."""
        if self._unsaved:
            self._save()
        doc = self.store.breaker(self.collection, self._label)
        with self._lock:
            self._read_time = doc.update_time if doc is not None else None
            if not self._unsaved:
                found = BreakerState.of(doc)
                if self.state.tripped and not found.tripped:
                    self._recent.clear()
                self.state = found
            state = self.state
        metrics.BREAKER_TRIPPED.labels(self._label).set(1 if state.tripped else 0)
        return state

    def suspect(self, reason: str, holds: Callable[[], bool]) -> None:
        """Until `clear_suspicion`, a destructive correction trips the breaker while `holds()`
        says what the caller saw (a bucket with nothing under the root) is still so. It is
        asked again at the correction because the world moves on: a sweep that began on an
        empty bucket may meet the first clips written after its start."""
        with self._lock:
            self._suspicion = Suspicion(reason, holds)

    def clear_suspicion(self) -> None:
        with self._lock:
            self._suspicion = None

    def allow(self) -> str | None:
        """Before each destructive write: None to go ahead (the budget is spent), else why
        not. The first refusal trips the breaker."""
        suspicion = self._standing_suspicion()
        with self._lock:
            if self.state.tripped:
                return self.state.reason or "writes paused"
            now = self.clock()
            while self._recent and now - self._recent[0] > self.window:
                self._recent.popleft()
            if suspicion is not None:
                reason = suspicion.reason
            elif len(self._recent) >= self.budget:
                reason = (f"more than {self.budget} destructive corrections within "
                          f"{self.window:.0f}s")
            else:
                self._recent.append(now)
                return None
            self.state = BreakerState(tripped=True, reason=reason,
                                      resumed_token=self.state.resumed_token)
            self._unsaved = True
        metrics.BREAKER_TRIPPED.labels(self._label).set(1)
        log.error("breaker tripped: destructive writes paused",
                  extra={"reconciler": self._label, "reason": reason})
        try:
            self._save()
        except StoreError as exc:
            log.warning("breaker state not saved yet", extra={"error": str(exc)})
        return reason

    def _standing_suspicion(self) -> Suspicion | None:
        """The suspicion, asked again outside the lock (it reads storage); one that no longer
        holds is dropped. A check that fails leaves it standing: the safe side. A tripped
        breaker refuses anyway, so it is not asked then."""
        with self._lock:
            suspicion = None if self.state.tripped else self._suspicion
        if suspicion is None:
            return None
        try:
            holds = suspicion.holds()
        except StoreError as exc:
            log.warning("suspicion not checked again", extra={"error": str(exc)})
            return suspicion
        if holds:
            return suspicion
        with self._lock:
            if self._suspicion is suspicion:
                self._suspicion = None
        log.info("suspicion dropped", extra={"reconciler": self._label,
                                             "reason": suspicion.reason})
        return None

    def resume(self, token: str) -> None:
        """A person's word: destructive writes go on, with a fresh budget. Raises StoreError."""
        doc = self.store.breaker(self.collection, self._label)
        fields = {"tripped": False, "reason": None, "resumedToken": token,
                  "reconciler": self._label}
        written = self.store.put_breaker(self.collection, self._label, fields,
                                         doc.update_time if doc is not None else None)
        with self._lock:
            self._read_time, self._unsaved = written, False
            self._recent.clear()
            self.state = BreakerState(resumed_token=token)
        metrics.BREAKER_TRIPPED.labels(self._label).set(0)
        log.warning("destructive writes resumed", extra={"reconciler": self._label,
                                                         "token": token})

    def _save(self) -> None:
        """Write our trip over the version we last read; after a conflict, read and try once
        more (a trip found there is as good as ours)."""
        for _ in range(2):
            with self._lock:
                state, read_time = self.state, self._read_time
            fields = {"tripped": True, "reason": state.reason,
                      "resumedToken": state.resumed_token, "reconciler": self._label}
            try:
                written = self.store.put_breaker(self.collection, self._label, fields,
                                                 read_time)
            except Conflict:
                doc = self.store.breaker(self.collection, self._label)
                with self._lock:
                    self._read_time = doc.update_time if doc is not None else None
                if BreakerState.of(doc).tripped:
                    with self._lock:
                        self._unsaved = False
                    return
                continue
            with self._lock:
                self._read_time, self._unsaved = written, False
            return
