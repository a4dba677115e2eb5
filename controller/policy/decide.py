"""The policy: one observation of a project in, one plan (writes + report) out. No I/O."""

from __future__ import annotations

from typing import Any

from controller.model import (
    Action,
    DriftKind,
    Observation,
    Plan,
    PolicySettings,
    Report,
)
from controller.policy.jobs import is_active, is_stale, latest_job_for
from controller.policy.slots import Presence, SlotState, resolve_slots
from controller.policy.status import target_status


def _skip(observation: Observation, reason: str) -> Plan:
    project = observation.project
    report = Report(
        project_id=project.id,
        original_status=project.status,
        corrected_status=project.status,
        claimed_clips=sum(1 for claim in project.claims if claim),
        action=Action.SKIPPED,
        reason=reason,
    )
    return Plan(update=None, report=report)


def _hold_reason(observation: Observation, settings: PolicySettings) -> str | None:
    """Why this project must not be touched now, if it must not (settle window, live job)."""
    now = observation.now
    age = now - observation.project.update_time
    if not observation.forced and age < settings.settle:
        return f"settling: written {age.total_seconds():.1f}s ago"
    for job in observation.jobs:
        if is_active(job, now, settings.stale_after):
            return f"active job {job.id} ({job.status})"
    for invalid in observation.invalid_jobs:
        if invalid.may_be_active:
            return f"job {invalid.id} is malformed ({invalid.reason}) and may be running"
    return None


def decide(observation: Observation, settings: PolicySettings) -> Plan:
    """Apply DESIGN.md §3 to one project; the result is a fixed point (D5)."""
    hold = _hold_reason(observation, settings)
    if hold is not None:
        return _skip(observation, hold)

    project = observation.project
    prefix = settings.location.project_prefix(project.user_id, project.id)
    presence = Presence(observation, prefix)
    n = project.prompt_count
    source = latest_job_for(observation.jobs, n)
    slots = resolve_slots(observation, presence, prefix, source)

    verified = [slot for slot in slots if slot.state is SlotState.VERIFIED]
    restored = [slot for slot in slots if slot.state is SlotState.RESTORED]
    missing = [slot.claim for slot in slots if slot.claim and slot.state is not SlotState.VERIFIED]
    extra = [claim for claim in project.claims[n:] if claim]
    status = target_status(project.status, n, len(verified) + len(restored))
    stitched_gone = project.stitched_object is not None and not presence.exists(
        project.stitched_object
    )
    stale = [job.id for job in observation.jobs
             if is_stale(job, observation.now, settings.stale_after)]

    update: dict[str, Any] = {}
    clips = [slot.value for slot in slots]
    if clips != list(project.claims):
        update["clipFilenames"] = clips
    if status != project.status:
        update["status"] = status
    previous_error = None
    if status == "error" and project.status == "generating":
        update["errorInfo"] = {
            "message": f"Generation stopped with no clip in storage (0 of {n}); "
            "marked as error by reel-reconciler",
        }
    elif status != "error" and project.status == "error" and project.error_info is not None:
        update["errorInfo"] = None
        previous_error = dict(project.error_info)
    if stitched_gone:
        update["stitchedFilename"] = None

    drift: list[DriftKind] = []
    if missing:
        drift.append(DriftKind.MISSING_CLIP)
    if restored:
        drift.append(DriftKind.RESTORED_CLIP)
    if status != project.status:
        stuck = project.status == "generating"
        drift.append(DriftKind.STUCK_GENERATING if stuck else DriftKind.STATUS_MISMATCH)
    if stitched_gone:
        drift.append(DriftKind.STITCHED_MISSING)
    if stale:
        drift.append(DriftKind.STALE_JOB)

    report = Report(
        project_id=project.id,
        original_status=project.status,
        corrected_status=status,
        claimed_clips=sum(1 for claim in project.claims if claim),
        verified_clips=len(verified),
        missing_clips=missing,
        restored_clips=[slot.value for slot in restored if slot.value],
        action=Action.CORRECTED if update else Action.NO_CHANGE,
        drift_kinds=drift,
        extra_claims=extra,
        stitched_missing=project.stitched if stitched_gone else None,
        stale_jobs=stale,
        recovered_video_seconds=len(restored) * (project.duration_seconds or 0),
    )
    if not update:
        return Plan(update=None, report=report)
    summary: dict[str, Any] = {
        "at": observation.now,
        "action": Action.CORRECTED.value,
        "originalStatus": project.status,
        "correctedStatus": status,
        "verifiedClips": len(verified),
        "restoredClips": len(restored),
        "missingClips": len(missing),
    }
    if previous_error is not None:
        summary["previousErrorInfo"] = previous_error
    update["lastReconciliation"] = summary
    return Plan(update=update, report=report)
