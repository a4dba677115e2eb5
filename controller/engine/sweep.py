"""Sweep: every project, page by page, with bounded concurrency; one failure never stops it,
but an outage does (the rest would fail the same way, each after a full retry deadline)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from controller import metrics
from controller.engine.reconcile import Engine, Trigger
from controller.model import Action, Report
from controller.stores import StoreError

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    scanned: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    reports: list[Report] = field(default_factory=list)
    """Reports whose action is not no_change, in project id order."""
    statuses: Counter[str] = field(default_factory=Counter)
    gcs_requests: int = 0
    firestore_requests: int = 0
    duration_seconds: float = 0.0
    aborted: str | None = None
    dry_run: bool = False

    @property
    def failed(self) -> bool:
        return self.aborted is not None or self.actions[Action.ERROR.value] > 0

    @property
    def drifted(self) -> int:
        return self.actions[Action.CORRECTED.value] + self.actions[Action.DRIFT.value]

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "scanned": self.scanned,
            "actions": dict(self.actions),
            "reports": [report.as_json() for report in self.reports],
            "gcsRequests": self.gcs_requests,
            "firestoreRequests": self.firestore_requests,
            "durationSeconds": round(self.duration_seconds, 3),
            "dryRun": self.dry_run,
        }
        if self.aborted:
            body["aborted"] = self.aborted
        return body


def sweep(engine: Engine, dry_run: bool = False, trigger: Trigger = Trigger.SWEEP,
          on_report: Callable[[Report], None] | None = None) -> SweepResult:
    """Reconcile every project once. Memory holds one page plus the in-flight work."""
    started = time.monotonic()
    gcs0, fs0 = engine.request_count()
    result = SweepResult(dry_run=dry_run)
    window = engine.settings.concurrency * 2
    pending: list[Future[Report]] = []

    def collect(future: Future[Report]) -> None:
        report = future.result()
        result.scanned += 1
        result.actions[report.action.value] += 1
        result.statuses[report.corrected_status or "unknown"] += 1
        if report.action is not Action.NO_CHANGE:
            result.reports.append(report)
        if report.unreachable and result.aborted is None:
            result.aborted = f"stopped early: {report.error}"
        if on_report is not None:
            on_report(report)

    with ThreadPoolExecutor(max_workers=engine.settings.concurrency,
                            thread_name_prefix="sweep") as pool:
        try:
            for page in engine.firestore.project_pages(engine.settings.page_size):
                for doc in page:
                    if result.aborted:
                        break
                    pending.append(pool.submit(engine.reconcile, doc.id, trigger, dry_run, doc))
                    while len(pending) >= window:
                        collect(pending.pop(0))
                if result.aborted:
                    break
        except StoreError as exc:
            result.aborted = f"stopped early: {exc}"
        for future in pending:
            collect(future)

    result.reports.sort(key=lambda report: report.project_id)
    gcs1, fs1 = engine.request_count()
    result.gcs_requests, result.firestore_requests = gcs1 - gcs0, fs1 - fs0
    result.duration_seconds = time.monotonic() - started
    _record(engine.reconciler, result)
    return result


def _record(reconciler: str, result: SweepResult) -> None:
    if result.aborted:
        log.error("sweep aborted", extra={"scanned": result.scanned, "reason": result.aborted})
        return
    metrics.SWEEP_DURATION_SECONDS.labels(reconciler).observe(result.duration_seconds)
    metrics.LAST_SWEEP_TIMESTAMP.labels(reconciler).set_to_current_time()
    metrics.PROJECTS_DRIFTED.labels(reconciler).set(result.drifted)
    for status in ("draft", "generating", "ready", "error"):
        metrics.PROJECTS.labels(reconciler, status).set(result.statuses[status])
    log.info("sweep finished", extra={
        "scanned": result.scanned, "actions": dict(result.actions),
        "gcsRequests": result.gcs_requests, "firestoreRequests": result.firestore_requests,
        "durationSeconds": round(result.duration_seconds, 3)})
