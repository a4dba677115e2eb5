"""Forced reconciles through annotations (Flux style): a full sweep, or named projects; and a
person's word that destructive corrections may resume after the breaker tripped."""

from __future__ import annotations

from typing import Any

import kopf

from reel_reconciler.engine import SweepResult, Trigger
from reel_reconciler.model import Action
from reel_reconciler.operator import (
    GROUP,
    PLURAL,
    RECONCILE_PROJECTS,
    REQUESTED_AT,
    RESUME_WRITES,
    VERSION,
)
from reel_reconciler.operator.lifecycle import publish_sweep
from reel_reconciler.operator.memo import Shared
from reel_reconciler.operator.status import StatusWriter, reports_summary
from reel_reconciler.runtime import ReconcilerRuntime

MAX_PROJECTS = 100


def _started(memo: kopf.Memo) -> tuple[StatusWriter, ReconcilerRuntime]:
    """The object's status writer and its running runtime; Kopf retries until it runs."""
    shared = Shared.of(memo)
    if shared is None or shared.runtime is None:
        raise kopf.TemporaryError("the reconciler is not running yet (see Ready)", delay=5)
    return shared.status, shared.runtime


@kopf.on.field(GROUP, VERSION, PLURAL, id="reconcile-requested-at",
               field=("metadata", "annotations", REQUESTED_AT))
async def reconcile_requested(new: Any, memo: kopf.Memo, **_: Any) -> None:
    """Hands the full sweep to the runtime and returns: a suspend, an Observe switch or a
    delete must not wait behind it. Status echoes the token once the sweep ends."""
    if not new:
        return
    status, runtime = _started(memo)

    async def done(result: SweepResult) -> None:
        await publish_sweep(status, runtime, result, {"lastHandledReconcileAt": str(new)})

    runtime.request_sweep(done)


@kopf.on.field(GROUP, VERSION, PLURAL, id="reconcile-projects",
               field=("metadata", "annotations", RECONCILE_PROJECTS))
async def reconcile_projects(new: Any, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The named projects, now: one Event for the request (Events are for rare things, never
    one per correction), the reports in status, each write in the change log."""
    ids = [part.strip() for part in str(new or "").split(",") if part.strip()]
    if not ids:
        return
    if len(ids) > MAX_PROJECTS:
        kopf.warn(body, reason="TooManyProjects",
                  message=f"{len(ids)} ids given; at most {MAX_PROJECTS} are reconciled at once")
        ids = ids[:MAX_PROJECTS]
    status, runtime = _started(memo)
    reports = await runtime.reconcile(ids, Trigger.ANNOTATION)
    failed = any(report.action in (Action.ERROR, Action.CONFLICT) for report in reports)
    post = kopf.warn if failed else kopf.info
    post(body, reason="ProjectsReconciled", message=reports_summary(reports))
    await status.write({"lastProjectReports": [report.as_json() for report in reports]})


@kopf.on.field(GROUP, VERSION, PLURAL, id="resume-writes",
               field=("metadata", "annotations", RESUME_WRITES))
async def resume_writes(new: Any, memo: kopf.Memo, **_: Any) -> None:
    """Echoed to status.lastHandledResumeWrites once the breaker's document says so."""
    if not new:
        return
    await _started(memo)[1].resume_writes(str(new))
