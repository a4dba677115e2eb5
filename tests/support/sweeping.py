"""A sweep whose reports are kept as they come, from however many threads, and checked to
name each project at most once."""

from __future__ import annotations

import threading

from reel_reconciler.engine.reconcile import Pipeline
from reel_reconciler.engine.sweep import SweepResult, sweep
from reel_reconciler.engine.sweep.ranges import SweepPlan
from reel_reconciler.model import Report


def swept_once(engine: Pipeline, plan: SweepPlan) -> tuple[list[Report], SweepResult]:
    """A dry-run sweep under `plan`: every report it made, and its result."""
    seen: list[Report] = []
    lock = threading.Lock()

    def keep(report: Report) -> None:
        with lock:
            seen.append(report)

    result = sweep(engine, dry_run=True, on_report=keep, plan=plan)
    ids = [report.project_id for report in seen]
    assert len(ids) == len(set(ids)), "a project was scanned twice"
    return seen, result
