"""Which corrections are destructive: they remove what the app wrote (a claimed clip path
emptied, a stitched reel dropped, a `ready` project demoted). A wrong bucket makes every
project look like that, so these, and only these, count against the breaker. Restoring a
clip or healing a stuck status is never destructive."""

from __future__ import annotations

from reel_reconciler.model import Report


def is_destructive(report: Report) -> bool:
    demoted = report.original_status == "ready" and report.corrected_status not in (None,
                                                                                     "ready")
    return bool(report.missing_clips) or report.stitched_missing is not None or demoted
