"""Each reconcile's outcome, once, in metrics and logs: ids go to log fields, never labels."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from reel_reconciler import metrics
from reel_reconciler.model import Action, DriftKind, ReconcilerId, Report, Trigger

log = logging.getLogger(__name__)


class Recorder:
    """Records reports for one reconciler (its metrics label)."""

    def __init__(self, reconciler: ReconcilerId) -> None:
        self.reconciler = reconciler
        self._label = reconciler.label
        self.on_flapping: Callable[[Report], None] | None = None
        """Told of each new hold of a flapping project, once (the operator posts an Event);
        called on the reconciling thread."""
        self._holds: dict[str, datetime] = {}
        """The holds already told, by project: a held project is seen again at every event
        and sweep until its hold ends."""
        self._lock = threading.Lock()

    def _new_hold(self, report: Report) -> bool:
        """True the first time this hold of this project is seen; forgets ended holds."""
        until = report.held_until
        if until is None:
            return False
        with self._lock:
            now = datetime.now(UTC)
            for project_id, ends in list(self._holds.items()):
                if ends <= now:
                    del self._holds[project_id]
            if self._holds.get(report.project_id) == until:
                return False
            self._holds[report.project_id] = until
            return True

    def flapping(self, report: Report) -> None:
        """A project held for flapping: counted, logged and told once per hold."""
        if not self._new_hold(report):
            return
        metrics.FLAPPING_HOLDS_TOTAL.labels(self._label).inc()
        log.warning("project held: its corrections keep being undone", extra={
            "projectId": report.project_id, "heldUntil": report.held_until.isoformat()
            if report.held_until else None, "reason": report.reason,
            "drift": [kind.value for kind in report.drift_kinds]})
        if self.on_flapping is not None:
            try:
                self.on_flapping(report)
            except Exception:
                log.exception("flapping notice failed", extra={"projectId": report.project_id})

    def invalid_job(self) -> None:
        metrics.DRIFT_DETECTED_TOTAL.labels(self._label,
                                            DriftKind.INVALID_DOCUMENT.value).inc()

    def record(self, report: Report, trigger: Trigger, seconds: float) -> None:
        """One project's outcome and how long it took to know it."""
        r = self._label
        metrics.RECONCILE_TOTAL.labels(r, trigger.value, report.action.value).inc()
        metrics.RECONCILE_DURATION_SECONDS.labels(r, trigger.value).observe(seconds)
        for kind in report.drift_kinds:
            metrics.DRIFT_DETECTED_TOTAL.labels(r, kind.value).inc()
            if report.action is Action.CORRECTED:
                metrics.CORRECTIONS_TOTAL.labels(r, kind.value).inc()
                if report.heal_seconds is not None:
                    metrics.TIME_TO_HEAL_SECONDS.labels(r, kind.value).observe(
                        report.heal_seconds)
        if report.action is Action.CORRECTED:
            metrics.RECOVERED_VIDEO_SECONDS_TOTAL.labels(r).inc(report.recovered_video_seconds)
        if DriftKind.FLAPPING in report.drift_kinds:
            self.flapping(report)
        quiet = report.action in (Action.NO_CHANGE, Action.SKIPPED) and not report.drift_kinds
        if quiet and not log.isEnabledFor(logging.DEBUG):
            return
        fields = {"projectId": report.project_id, "trigger": trigger.value,
                  "action": report.action.value, "durationSeconds": round(seconds, 4)}
        if quiet:
            log.debug("reconciled", extra=fields)
        elif report.action is Action.ERROR:
            log.error("reconcile failed", extra={**fields, "error": report.error})
        elif report.action is Action.SKIPPED:
            log.warning("skipped", extra={**fields, "reason": report.reason})
        else:
            log.info("reconciled", extra={
                **fields, "originalStatus": report.original_status,
                "correctedStatus": report.corrected_status,
                "missingClips": len(report.missing_clips),
                "restoredClips": len(report.restored_clips),
                "healSeconds": report.heal_seconds,
                "drift": [kind.value for kind in report.drift_kinds]})
