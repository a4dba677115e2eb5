"""The policy: one observation of a project in, one plan (writes + report) out. No I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reel_reconciler.model import (
    Action,
    DriftKind,
    Observation,
    Plan,
    PolicySettings,
    Report,
)
from reel_reconciler.policy.jobs import is_active, is_revived, is_stale, restore_sources
from reel_reconciler.policy.slots import Presence, SlotState, resolve_slots, stitched_candidate
from reel_reconciler.policy.status import error_message, target_status


@dataclass(frozen=True)
class Hold:
    """Why a project is someone else's now, and when that ends by itself, if it does."""

    reason: str
    passes_in: timedelta | None = None
    """Until the settle window or the stitch timeout has passed; None for a job, whose end
    comes with a write of its own (or its staleness, which the stale-job timer finds)."""


def _skip(observation: Observation, hold: Hold) -> Plan:
    project = observation.project
    report = Report(
        project_id=project.id,
        original_status=project.status,
        corrected_status=project.status,
        claimed_clips=sum(1 for claim in project.claims if claim),
        action=Action.SKIPPED,
        reason=hold.reason,
        retry_after=(round(hold.passes_in.total_seconds(), 3)
                     if hold.passes_in is not None else None),
    )
    return Plan(update=None, report=report)


def _as_slots(claims: tuple[str | None, ...], n: int) -> list[str | None]:
    """The stored list read as n slots: a missing entry or '' is an empty slot, like null. A
    list that differs from ours only in such spelling is not rewritten (D6)."""
    return [(claims[i] or None) if i < len(claims) else None for i in range(n)]


def _ago(age: timedelta) -> str:
    return f"{age.total_seconds():.1f}s ago"


def hold_reason(observation: Observation, settings: PolicySettings) -> Hold | None:
    """Why this project is someone else's now, if it is: we then write nothing at all.

    A live job's worker, a zombie worker that came back after a timeout, a stitcher at work,
    and the regenerate route's first write (its job is created seconds later) all write
    blind: any write of ours would be overwritten, or would overwrite theirs.
    """
    now = observation.now
    project = observation.project
    age = now - project.update_time
    if not observation.forced and age < settings.settle:
        return Hold(f"settling: written {_ago(age)}", settings.settle - age)
    for job in observation.jobs:
        if is_active(job, now, settings.stale_after):
            return Hold(f"active job {job.id} ({job.status})")
        if is_revived(job, now, settings.stale_after):
            return Hold(f"revived job {job.id}: its worker wrote after it was marked timed out")
    for invalid in observation.invalid_jobs:
        if invalid.may_be_active:
            return Hold(f"job {invalid.id} is malformed ({invalid.reason}) and may be running")
    if project.status == "stitching" and age < settings.stitch_timeout:
        return Hold(f"stitch in progress: stitching written {_ago(age)}",
                    settings.stitch_timeout - age)
    if project.status == "generating" and age < settings.settle:
        return Hold(f"generation starting: generating written {_ago(age)}, no live job yet",
                    settings.settle - age)
    return None


def went_wrong_at(observation: Observation, drift: list[DriftKind]) -> datetime:
    """When the project went wrong, as far as the reads tell: for a project stuck
    generating or stitching, its newest job's last sign of life; for a change a storage
    notification announced, that event's time; otherwise the document's last write."""
    project = observation.project
    if {DriftKind.STUCK_GENERATING, DriftKind.STUCK_STITCHING} & set(drift) and observation.jobs:
        newest = max(observation.jobs, key=lambda job: (job.created, job.id))
        sign = newest.last_sign_of_life
        if sign is not None:
            return sign
    if observation.changed_at is not None:
        return observation.changed_at
    return project.update_time


def decide(observation: Observation, settings: PolicySettings) -> Plan:
    """Apply the policy to one project; the result is a fixed point (D5). A project its
    owner opted out is looked at all the same, so that its report tells the drift we would
    have corrected, and is never written, whatever the trigger."""
    hold = hold_reason(observation, settings)
    if observation.project.opted_out:
        return _opted_out(observation, settings, hold)
    if hold is not None:
        return _skip(observation, hold)
    plan = _correct(observation, settings)
    if plan.update is None:
        return plan
    return _unless_flapping(observation, settings, plan.update, plan.report)


def fingerprint(update: Mapping[str, Any]) -> str:
    """Which correction this is: the fields it writes and their values, its summary aside.
    The same correction needed again means its result was undone: our write is a fixed
    point (D5), and a change in the bucket alone calls for another correction, not this one."""
    fields = {name: value for name, value in update.items() if name != "lastReconciliation"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _span(length: timedelta) -> str:
    seconds = round(length.total_seconds(), 3)
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


def _unless_flapping(observation: Observation, settings: PolicySettings,
                     update: Mapping[str, Any], report: Report) -> Plan:
    """The correction, unless another writer undid it `flap_corrections` times within the
    window: the project is then held until `flap_hold` after our last correction, instead of
    a write war. The count lives in the document (`lastReconciliation.streak`: when the same
    correction was written before), so it holds across reconciles, replicas and restarts, and
    a write of the owner that ends the war (any other correction) starts it again."""
    now = observation.now
    mark = fingerprint(update)
    last = observation.project.last_correction
    streak: list[datetime] = []
    if last is not None and last.fingerprint == mark and not _owner_came_back(
            observation, report, max(last.streak, default=now)):
        streak = [at for at in last.streak if now - at < settings.flap_window]
    if len(streak) >= settings.flap_corrections:
        until = max(streak) + settings.flap_hold
        if now < until:
            return Plan(update=None, report=report.model_copy(update={
                "action": Action.SKIPPED,
                "reason": (f"flapping: corrected {len(streak)} times in "
                           f"{_span(settings.flap_window)} and undone by another writer each "
                           f"time; held until {until:%Y-%m-%dT%H:%M:%SZ}"),
                "drift_kinds": [*report.drift_kinds, DriftKind.FLAPPING],
                "retry_after": round((until - now).total_seconds(), 3),
                "held_until": until, "heal_seconds": None}))
        streak = []  # the hold is over: tried again, and counted afresh
    summary = {**update["lastReconciliation"], "fingerprint": mark, "streak": [*streak, now]}
    return Plan(update={**update, "lastReconciliation": summary}, report=report)


def _owner_came_back(observation: Observation, report: Report, since: datetime) -> bool:
    """Whether the project's owner worked on it since our last correction, so that needing
    the same correction again is a new episode, not an undo: a job of the project was
    created or showed life since (a generation started again and died), or the project is a
    stuck stitch (a stitcher owned it for the whole stitch timeout, so such corrections come
    no faster than one per timeout)."""
    if DriftKind.STUCK_STITCHING in report.drift_kinds:
        return True
    return any(max(job.created, job.last_sign_of_life or job.created) > since
               for job in observation.jobs)


def _opted_out(observation: Observation, settings: PolicySettings, hold: Hold | None) -> Plan:
    """Skipped, with the drift found when nobody else owns the project; no retry is due:
    the opt-out ends with a write of its owner, which a trigger sees like any other."""
    reason = f"opted out: {settings.opt_out_field} is true, nothing is written"
    if hold is not None:
        return _skip(observation, Hold(f"{reason} ({hold.reason})"))
    seen = _correct(observation, settings).report
    return Plan(update=None, report=seen.model_copy(update={
        "action": Action.SKIPPED, "reason": reason, "heal_seconds": None}))


def _drift_kinds(before: str, after: str, found: Mapping[DriftKind, bool]) -> list[DriftKind]:
    """What went wrong, in the report's order: clips, the status (a stuck one named as such),
    then the stitched reel and stale jobs."""
    drift = [kind for kind in (DriftKind.MISSING_CLIP, DriftKind.RESTORED_CLIP) if found[kind]]
    if after != before:
        drift.append({"generating": DriftKind.STUCK_GENERATING,
                      "stitching": DriftKind.STUCK_STITCHING}.get(before,
                                                                  DriftKind.STATUS_MISMATCH))
    later = (DriftKind.STITCHED_MISSING, DriftKind.RESTORED_STITCHED, DriftKind.STALE_JOB)
    return drift + [kind for kind in later if found[kind]]


def _correct(observation: Observation, settings: PolicySettings) -> Plan:
    """The correction of a project nobody else owns: what to write, or nothing."""
    project = observation.project
    prefix = settings.location.project_prefix(project.user_id, project.id)
    presence = Presence(observation, prefix)
    n = project.prompt_count
    slots = resolve_slots(observation, presence, prefix, restore_sources(observation.jobs, n))

    verified = [slot for slot in slots if slot.state is SlotState.VERIFIED]
    restored = [slot for slot in slots if slot.state is SlotState.RESTORED]
    missing = [slot.claim for slot in slots if slot.claim and slot.state is not SlotState.VERIFIED]
    extra = [claim for claim in project.claims[n:] if claim]
    usable = len(verified) + len(restored)
    status = target_status(project.status, n, usable)
    stitched_gone = project.stitched_object is not None and not presence.exists(
        project.stitched_object
    )
    reel = None
    if status == "ready" and (project.stitched_object is None or stitched_gone):
        reel = stitched_candidate(observation, presence, prefix, slots)
    stale = [job.id for job in observation.jobs
             if is_stale(job, observation.now, settings.stale_after)]

    update: dict[str, Any] = {}
    clips = [slot.value for slot in slots]
    if clips != _as_slots(project.claims, n):
        update["clipFilenames"] = clips
    if status != project.status:
        update["status"] = status
    previous_error = None
    if status == "error" and project.status != "error":
        update["errorInfo"] = {"message": error_message(n, usable)}
    elif status != "error" and project.status == "error" and project.error_info is not None:
        update["errorInfo"] = None
        previous_error = dict(project.error_info)
    if reel is not None:
        update["stitchedFilename"] = reel.name
    elif stitched_gone:
        update["stitchedFilename"] = None

    drift = _drift_kinds(project.status, status, {
        DriftKind.MISSING_CLIP: bool(missing), DriftKind.RESTORED_CLIP: bool(restored),
        DriftKind.STITCHED_MISSING: stitched_gone,
        DriftKind.RESTORED_STITCHED: reel is not None, DriftKind.STALE_JOB: bool(stale)})

    heal = None
    if update:
        wrong_for = observation.now - went_wrong_at(observation, drift)
        heal = round(max(0.0, wrong_for.total_seconds()), 3)
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
        restored_stitched=reel.name if reel is not None else None,
        stale_jobs=stale,
        recovered_video_seconds=len(restored) * (project.duration_seconds or 0),
        heal_seconds=heal,
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
        "basedOn": project.update_time,
        "healSeconds": report.heal_seconds,
    }
    if previous_error is not None:
        summary["previousErrorInfo"] = previous_error
    update["lastReconciliation"] = summary
    return Plan(update=update, report=report)
