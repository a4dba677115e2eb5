"""Each reconcile's outcome, once, in metrics and logs: ids go to log fields, never labels."""

from __future__ import annotations

import logging

from controller import metrics
from controller.model import Action, DriftKind, Report, Trigger

log = logging.getLogger(__name__)


class Recorder:
    """Records reports for one reconciler (its metrics label)."""

    def __init__(self, reconciler: str) -> None:
        self.reconciler = reconciler

    def invalid_job(self) -> None:
        metrics.DRIFT_DETECTED_TOTAL.labels(self.reconciler,
                                            DriftKind.INVALID_DOCUMENT.value).inc()

    def record(self, report: Report, trigger: Trigger, seconds: float) -> None:
        """One project's outcome and how long it took to know it."""
        r = self.reconciler
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
