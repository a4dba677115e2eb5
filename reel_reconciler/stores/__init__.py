"""Thin adapters over Firestore and GCS: explicit timeouts and retry deadlines, counted requests,
and Google's exceptions mapped to three meanings the engine acts on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests
from google.api_core import exceptions as gexc
from prometheus_client import Counter as PromCounter

from reel_reconciler.model.identity import ReconcilerId
from reel_reconciler.stores.billing import Billed, Tally


class StoreError(RuntimeError):
    """A read or write failed; the engine reports `action: error` and writes nothing."""


class Outage(StoreError):
    """The service could not be reached within the retry deadline: stop asking for now."""


class Conflict(StoreError):
    """A precondition failed: someone else wrote first. Re-read and decide again."""


_CONFLICTS = (gexc.FailedPrecondition, gexc.Aborted, gexc.Conflict)
_OUTAGES = (
    gexc.RetryError, gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.GatewayTimeout,
    requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError,
)


class RequestLog:
    """Counts requests per (op, outcome) for one store, in Prometheus and for run summaries."""

    def __init__(self, service: str, metric: PromCounter, reconciler: ReconcilerId) -> None:
        self.service = service
        self._metric = metric
        self._reconciler = reconciler.label
        self._counts = Tally()
        self.billed = Billed(service, self._reconciler)
        """What the requests cost: GCS operations by class (counted here), Firestore
        documents read (counted by the store, which sees the documents)."""

    def count(self, op: str, outcome: str = "ok", n: int = 1) -> None:
        self._counts.add(op, outcome, n)
        self._metric.labels(self._reconciler, op, outcome).inc(n)
        self.billed.operations(op, n)

    def total(self) -> int:
        return self._counts.total()

    def by_op(self) -> Counter[str]:
        """Requests so far per operation, whatever their outcome."""
        return self._counts.by_first()

    @contextmanager
    def call(self, op: str, what: str) -> Iterator[Callable[[int], None]]:
        """Wrap one logical request: count it, and translate its failure into our errors.

        Yields a function that counts extra requests (pages) made inside the block.
        """
        extra = 0

        def more(n: int = 1) -> None:
            nonlocal extra
            extra += n

        try:
            yield more
        except _CONFLICTS as exc:
            self.count(op, "conflict", 1 + extra)
            raise Conflict(f"{self.service} {op} {what}: precondition failed ({exc})") from exc
        except _OUTAGES as exc:
            self.count(op, "unavailable", 1 + extra)
            cause = exc.__cause__ or exc
            raise Outage(f"{self.service} unreachable during {op} {what}: {cause}") from exc
        except gexc.GoogleAPIError as exc:
            self.count(op, "error", 1 + extra)
            raise StoreError(f"{self.service} {op} {what} failed: {exc}") from exc
        self.count(op, "ok", 1 + extra)
