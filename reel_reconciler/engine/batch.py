"""One batch on its way through the pipeline: what was read, what was decided, and each
project's report as it becomes known."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reel_reconciler.model import Action, ObjectInfo, Report, Trigger
from reel_reconciler.stores import Outage, StoreError
from reel_reconciler.stores.firestore import Document

HALTED = "not written: the reconciler is stopping"
BREAKER_HELD = "not written: the breaker on destructive corrections is tripped"


@dataclass(frozen=True)
class Prefetched:
    """What a sweep already read about one project, so that its first attempt need not read
    it again; None: not read, ask the store. Retries after a conflict always re-read."""

    jobs: Sequence[Document] | None = None
    """Every job of the project, in id order (as the store's per-project query returns them)."""
    objects: Sequence[ObjectInfo] | None = None
    """Every object under the project's prefix (a complete listing)."""
    changed_at: datetime | None = None
    """When a storage notification said an object of the project changed."""


Read = Sequence[tuple[str, Document | None, Prefetched | None]]
"""Projects as read: id, document (None: it does not exist), and what else was read."""


@dataclass(frozen=True)
class Correction:
    """A decided write, not made yet: the report it stands for and its precondition, and
    what the change log needs of it."""

    report: Report
    update: Mapping[str, Any]
    read_update_time: datetime
    trigger: Trigger
    before: Mapping[str, Any] | None
    """The fields of the version read, which the write replaces."""


@dataclass
class Batch:
    """What every step of one batch shares: how it was triggered, which attempt it is on,
    the reports known so far (and when each became known), and the outage that ends it."""

    trigger: Trigger
    dry_run: bool
    order: list[str]
    """The ids whose reports are returned, in the order asked."""
    changed_at: Mapping[str, datetime] = field(default_factory=dict)
    """When storage notifications said the projects' objects changed."""
    started: float = field(default_factory=time.monotonic)
    attempt: int = 1
    reports: dict[str, Report] = field(default_factory=dict)
    known_at: dict[str, float] = field(default_factory=dict)
    outage: str | None = None

    def set(self, report: Report) -> None:
        self.reports[report.project_id] = report
        self.known_at[report.project_id] = time.monotonic()
        if report.unreachable and self.outage is None:
            self.outage = report.error

    def failed(self, project_id: str, exc: StoreError) -> None:
        self.set(store_failure(project_id, exc, self.attempt))

    def not_attempted(self, project_id: str) -> None:
        """After an outage: the projects left are not tried, each reported so."""
        self.set(error_report(project_id, f"not attempted: {self.outage}", self.attempt, True))

    def in_order(self) -> list[Report]:
        return [self.reports[project_id] for project_id in self.order]


def error_report(project_id: str, message: str, attempts: int, outage: bool = False) -> Report:
    return Report(project_id=project_id, action=Action.ERROR, error=message, attempts=attempts,
                  unreachable=outage or None)


def halted(report: Report) -> Report:
    """A decided correction that a stop kept from being written: drift seen, nothing done."""
    return report.model_copy(update={"action": Action.SKIPPED, "reason": HALTED})


def store_failure(project_id: str, exc: StoreError, attempts: int = 1) -> Report:
    """A store's failure as a report: unreachable when it was an outage."""
    return error_report(project_id, str(exc), attempts, outage=isinstance(exc, Outage))
