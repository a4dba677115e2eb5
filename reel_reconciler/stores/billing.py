"""What the stores' calls cost in the units the price lists bill: Firestore documents read
and GCS operations by class, each by the pass that asked (a sweep, a listener's reconciles,
the endpoint...). Requests alone hide the cost: one streamed Firestore page of 300 documents
is one request and 300 billed reads.

The pass comes from `reading_for`, set around a reconcile by the engine; reads no pass
claims (a start's probe, a heartbeat's conflict) count as `other`, and the calls only a
sweep makes name `sweep` themselves, since the sweep reads its streams on threads of its own.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from reel_reconciler import metrics
from reel_reconciler.metrics import FEED, OTHER
from reel_reconciler.model import Trigger

__all__ = ["FEED", "OTHER", "SWEEP", "Billed", "Tally", "count_billed_reads",
           "current_pass", "reading_for"]

SWEEP = Trigger.SWEEP.value

GCS_CLASSES = {"list": "A", "probe": "A", "get_metadata": "B"}
"""Each GCS operation we make, by its price class: listing is class A, reading one object's
metadata class B. Nothing here writes (writes would be class A too)."""
AGGREGATION_ENTRIES = 1000
"""Index entries a count() aggregation is billed one read for."""

_PASS: ContextVar[str | None] = ContextVar("reel_reconciler_pass", default=None)


@contextmanager
def reading_for(trigger: str) -> Iterator[None]:
    """Count the reads made inside the block (on this thread) for `trigger`."""
    token = _PASS.set(trigger)
    try:
        yield
    finally:
        _PASS.reset(token)


def current_pass(default: str = OTHER) -> str:
    """The pass the current reads are for, or `default` if none was set."""
    return _PASS.get() or default


class Tally:
    """Counts keyed by pairs of labels, shared by threads: their sum, and their sums by the
    pair's first label."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, first: str, second: str, n: int) -> None:
        with self._lock:
            self._counts[(first, second)] += n

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def by_first(self) -> Counter[str]:
        found: Counter[str] = Counter()
        with self._lock:
            for (first, _second), n in self._counts.items():
                found[first] += n
        return found


def count_billed_reads(entries: int) -> int:
    """Reads a count() aggregation over `entries` index entries is billed: one per 1,000
    started, at least one."""
    return max(1, math.ceil(entries / AGGREGATION_ENTRIES))


class Billed:
    """One store's billed units so far: GCS operations by class, or Firestore documents read;
    in Prometheus by pass and class, and in totals for run summaries."""

    def __init__(self, service: str, reconciler: str) -> None:
        self.service = service
        self._reconciler = reconciler
        self._counts = Tally()
        """(class, pass) for GCS; ("read", pass) for Firestore."""

    def _add(self, kind: str, trigger: str, n: int) -> None:
        if n <= 0:
            return
        self._counts.add(kind, trigger, n)
        if self.service == "gcs":
            metrics.GCS_OPERATIONS_TOTAL.labels(self._reconciler, kind, trigger).inc(n)
        else:
            metrics.FIRESTORE_DOCUMENTS_READ_TOTAL.labels(self._reconciler, trigger).inc(n)

    def operations(self, op: str, n: int = 1, trigger: str | None = None) -> None:
        """`n` GCS requests of `op` (a no-op for an op no price class lists)."""
        price_class = GCS_CLASSES.get(op) if self.service == "gcs" else None
        if price_class is not None:
            self._add(price_class, trigger or current_pass(), n)

    def documents(self, n: int, trigger: str | None = None) -> None:
        """`n` Firestore documents read (a query that found none is billed one: the caller
        says so with n=1)."""
        self._add("read", trigger or current_pass(), n)

    def total(self) -> int:
        """Every unit billed so far: documents read, or GCS operations."""
        return self._counts.total()

    def by_class(self) -> Counter[str]:
        """GCS operations so far per price class ("A", "B"); Firestore's under "read"."""
        return self._counts.by_first()
