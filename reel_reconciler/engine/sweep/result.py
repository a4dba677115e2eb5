"""What a sweep found, as counts, kept reports and the gauges it leaves behind."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from reel_reconciler import metrics
from reel_reconciler.engine.sweep.ranges import KeyRange, WorkProfile
from reel_reconciler.model import PROJECT_STATUSES, Action, ReconcilerId, Report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RangeSummary:
    """One range of a ranged sweep: what it scanned and how long it took."""

    key_range: KeyRange
    scanned: int
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {**self.key_range.as_json(), "scanned": self.scanned,
                "durationSeconds": round(self.seconds, 3)}


@dataclass
class SweepResult:
    scanned: int = 0
    actions: Counter[Action] = field(default_factory=Counter)
    reports: list[Report] = field(default_factory=list)
    """Reports whose action is not no_change, in project id order (none if not kept)."""
    statuses: Counter[str] = field(default_factory=Counter)
    gcs_requests: int = 0
    firestore_requests: int = 0
    documents_read: int = 0
    """Firestore documents read, as billed (requests hide it: a page is one request and up
    to a page of reads)."""
    gcs_class_a: int = 0
    """GCS class A operations (listings)."""
    gcs_class_b: int = 0
    """GCS class B operations (metadata reads)."""
    duration_seconds: float = 0.0
    aborted: str | None = None
    dry_run: bool = False
    ranges: list[RangeSummary] = field(default_factory=list)
    """Each range of a ranged sweep, in key order (empty for one range)."""
    delta: dict[str, int] | None = None
    """A delta round's own counts (its ranges, those passed in full, users read, projects of
    the indexed pass); None for a full sweep."""
    by_status: dict[str, int] | None = None
    """Projects in each status, counted by Firestore, when the reports do not cover every
    project (a delta round); None: the reports' own statuses count."""
    splits: list[str] = field(default_factory=list)
    """Split points that would give the next ranged sweep similar work per range, from the
    projects per user this one counted (empty unless ranged and complete)."""
    splits_for: int = 0
    """The number of ranges the split points were made for (the plan's, not always one more
    than the points: a few large users cannot be cut so finely)."""
    profile: WorkProfile | None = None
    """Projects per user of a worker's one range of a full distributed round, for the
    coordinator's split points (None otherwise)."""

    @property
    def failed(self) -> bool:
        return self.aborted is not None or self.actions[Action.ERROR] > 0

    @property
    def complete(self) -> bool:
        """Whether every project was counted: a full sweep, or a delta round that passed every
        range in full (another counts only the projects it read)."""
        return self.delta is None or self.delta.get("fullRanges") == self.delta.get("ranges")

    @property
    def drifted(self) -> int:
        return self.actions[Action.CORRECTED] + self.actions[Action.DRIFT]

    def add(self, report: Report, keep: bool) -> None:
        """Count one project's report; keep it too if asked and it is not no_change."""
        self.scanned += 1
        self.actions[report.action] += 1
        self.statuses[report.corrected_status or "unknown"] += 1
        if keep and report.action is not Action.NO_CHANGE:
            self.reports.append(report)
        if report.unreachable and self.aborted is None:
            self.aborted = f"stopped early: {report.error}"

    def counts(self) -> dict[str, int]:
        """The count of each action that happened, by its name."""
        return {action.value: count for action, count in self.actions.items()}

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "scanned": self.scanned,
            "actions": self.counts(),
            "reports": [report.as_json() for report in self.reports],
            "gcsRequests": self.gcs_requests,
            "firestoreRequests": self.firestore_requests,
            "firestoreDocumentsRead": self.documents_read,
            "gcsClassA": self.gcs_class_a,
            "gcsClassB": self.gcs_class_b,
            "durationSeconds": round(self.duration_seconds, 3),
            "dryRun": self.dry_run,
        }
        if self.aborted:
            body["aborted"] = self.aborted
        if self.ranges:
            body["ranges"] = [summary.as_json() for summary in self.ranges]
        if self.delta is not None:
            body["delta"] = dict(self.delta)
        return body

    def record(self, reconciler: ReconcilerId) -> None:
        """The sweep's gauges and its log line; an aborted sweep leaves the gauges alone (its
        counts cover part of the projects)."""
        if self.aborted:
            log.error("sweep aborted", extra={"scanned": self.scanned, "reason": self.aborted})
            return
        label = reconciler.label
        metrics.SWEEP_DURATION_SECONDS.labels(label).observe(self.duration_seconds)
        metrics.LAST_SWEEP_TIMESTAMP.labels(label).set_to_current_time()
        if self.complete:
            metrics.PROJECTS_DRIFTED.labels(label).set(self.drifted)
        counted = self.statuses if self.by_status is None else self.by_status
        if self.complete or self.by_status is not None:
            for status in PROJECT_STATUSES:
                metrics.PROJECTS.labels(label, status).set(counted.get(status, 0))
        log.info("sweep finished", extra={
            "scanned": self.scanned, "actions": self.counts(),
            "gcsRequests": self.gcs_requests, "firestoreRequests": self.firestore_requests,
            "firestoreDocumentsRead": self.documents_read,
            "durationSeconds": round(self.duration_seconds, 3), "delta": self.delta})
