"""What the policy decides on and what it decides: the observation of one project, the
knobs, the plan and its report, in the vocabulary of actions, triggers and drift kinds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reel_reconciler import defaults
from reel_reconciler.model.documents import InvalidJob, Job, Location, ObjectInfo, Project


class Action(StrEnum):
    NO_CHANGE = "no_change"
    CORRECTED = "corrected"
    DRIFT = "drift"
    SKIPPED = "skipped"
    CONFLICT = "conflict"
    ERROR = "error"


class Trigger(StrEnum):
    """Why a reconcile runs; automatic triggers respect the settle window, forced ones do not."""

    LISTENER = "listener"
    SWEEP = "sweep"
    STALE_JOB = "stale_job"
    ANNOTATION = "annotation"
    CLI = "cli"
    API = "api"

    @property
    def forced(self) -> bool:
        return self in (Trigger.ANNOTATION, Trigger.CLI, Trigger.API)


class DriftKind(StrEnum):
    """The fixed set of drift kinds; used as a metric label, so it must stay small."""

    MISSING_CLIP = "missing_clip"
    RESTORED_CLIP = "restored_clip"
    STATUS_MISMATCH = "status_mismatch"
    STUCK_GENERATING = "stuck_generating"
    STUCK_STITCHING = "stuck_stitching"
    STITCHED_MISSING = "stitched_missing"
    RESTORED_STITCHED = "restored_stitched"
    STALE_JOB = "stale_job"
    INVALID_DOCUMENT = "invalid_document"
    FLAPPING = "flapping"
    """Our corrections keep being undone by another writer: the project is held."""


@dataclass(frozen=True)
class PolicySettings:
    """The knobs the pure policy needs; filled from config."""

    location: Location
    stale_after: timedelta = field(default_factory=lambda: defaults.STALE_TIMEOUT)
    settle: timedelta = field(default_factory=lambda: defaults.SETTLE)
    stitch_after: timedelta | None = None
    """How long a `stitching` project is the stitcher's; None: the stale timeout."""
    opt_out_field: str = field(default_factory=lambda: defaults.OPT_OUT_FIELD)
    """The project field whose `true` keeps every write of ours off the project."""
    flap_corrections: int = field(default_factory=lambda: defaults.FLAP_CORRECTIONS)
    """Corrections another writer may undo within `flap_window` before the project is held."""
    flap_window: timedelta = field(default_factory=lambda: defaults.FLAP_WINDOW)
    flap_hold: timedelta = field(default_factory=lambda: defaults.FLAP_HOLD)
    """How long a flapping project is held, from its last correction."""

    @property
    def stitch_timeout(self) -> timedelta:
        return self.stale_after if self.stitch_after is None else self.stitch_after


@dataclass(frozen=True)
class Observation:
    """Everything the policy looks at for one project, read at one moment."""

    project: Project
    jobs: tuple[Job, ...]
    objects: tuple[ObjectInfo, ...]
    """Every object under the project's prefix (a complete listing)."""
    outside: Mapping[str, ObjectInfo | None]
    """Metadata reads of claimed paths outside the prefix: None means the object is absent."""
    now: datetime
    forced: bool = False
    invalid_jobs: tuple[InvalidJob, ...] = ()
    changed_at: datetime | None = None
    """When a storage notification says an object of the project changed, if one did."""


class Report(BaseModel):
    """What one reconcile found and did; keys are the seed's camelCase ones, plus more."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    project_id: str
    original_status: str | None = None
    corrected_status: str | None = None
    claimed_clips: int = 0
    verified_clips: int = 0
    missing_clips: list[str] = Field(default_factory=list)
    restored_clips: list[str] = Field(default_factory=list)
    action: Action = Action.NO_CHANGE
    error: str | None = None
    reason: str | None = None
    drift_kinds: list[DriftKind] = Field(default_factory=list)
    extra_claims: list[str] = Field(default_factory=list)
    stitched_missing: str | None = None
    restored_stitched: str | None = None
    stale_jobs: list[str] = Field(default_factory=list)
    recovered_video_seconds: int = 0
    heal_seconds: float | None = None
    """For a correction: how long the project had been wrong (see `policy.went_wrong_at`)."""
    attempts: int = 1
    retry_after: float | None = None
    """Skipped only until this many seconds have passed (a settle window, a stitch timeout)."""
    unreachable: bool | None = None
    """True when the error was an outage (a service unreachable), not a bad answer."""
    held_until: datetime | None = None
    """A flapping project: when its hold ends and a correction is tried again."""

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


@dataclass(frozen=True)
class Plan:
    """The policy's decision: the Firestore fields to write (None: write nothing) and why."""

    update: Mapping[str, Any] | None
    report: Report

