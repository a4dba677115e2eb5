"""What the controller reads, parsed once into validated types: projects, jobs, objects.

A document that does not parse is an `InvalidDocument`, never a crash further down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NaiveDatetime,
    ValidationError,
    field_validator,
)

from reel_reconciler.defaults import OPT_OUT_FIELD

ProjectStatus = Literal["draft", "generating", "stitching", "ready", "error"]
PROJECT_STATUSES: tuple[ProjectStatus, ...] = get_args(ProjectStatus)
JobStatus = Literal["queued", "processing", "completed", "failed"]
ACTIVE_JOB_STATUSES: frozenset[str] = frozenset({"queued", "processing"})

WRITTEN_FIELDS = ("clipFilenames", "status", "errorInfo", "stitchedFilename", "updatedAt",
                  "lastReconciliation")
"""Every project field a correction may write; nothing else of a project is ever ours."""

# Bounds on what a sane document holds; anything beyond is an "absurd size".
MAX_PROMPTS = 500
MAX_CLAIMS = 1000
MAX_OBJECT_NAME = 1024


class InvalidDocument(ValueError):
    """A Firestore document the controller refuses to act on; the message says why."""


@dataclass(frozen=True)
class Location:
    """Where the controller's data lives: one Firestore database and one bucket."""

    bucket: str
    root_prefix: str = "reel-maker"

    def project_prefix(self, user_id: str, project_id: str) -> str:
        return f"{self.root_prefix}/{user_id}/{project_id}/"

    def object_name(self, claim: str) -> str:
        """The object name a claimed path refers to; raises InvalidDocument if unsafe."""
        name = claim
        if claim.startswith("gs://"):
            bucket, _, name = claim[len("gs://") :].partition("/")
            if bucket != self.bucket:
                raise InvalidDocument(f"path {claim!r} is in foreign bucket {bucket!r}")
        if not name or len(name.encode()) > MAX_OBJECT_NAME:
            raise InvalidDocument(f"path {claim!r} is not a valid object name")
        if name.startswith("/") or "\\" in name or "\x00" in name:
            raise InvalidDocument(f"path {claim!r} is not a relative object name")
        segments = name.rstrip("/").split("/")
        if ".." in segments or "." in segments:
            raise InvalidDocument(f"path {claim!r} contains a traversal segment")
        if "" in segments:
            raise InvalidDocument(f"path {claim!r} is not in normal form")
        return name


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Timestamp = AwareDatetime | NaiveDatetime


def folder_user(value: object) -> str | None:
    """`value` if it is a userId that names exactly one folder `{root}/{value}/`."""
    if not isinstance(value, str) or not value or len(value) > 128 or value in (".", ".."):
        return None
    if any(char in value for char in "/\\\x00"):
        return None
    return value


class _ProjectFields(BaseModel):
    """The fields of a project document the controller reads; others are ignored."""

    model_config = ConfigDict(extra="ignore")

    userId: str
    status: ProjectStatus
    promptList: list[str] = Field(default_factory=list, max_length=MAX_PROMPTS)
    clipFilenames: list[str | None] = Field(default_factory=list, max_length=MAX_CLAIMS)
    stitchedFilename: str | None = None
    errorInfo: dict[str, Any] | None = None
    durationSeconds: int | None = Field(default=None, ge=0, le=24 * 3600)

    @field_validator("userId")
    @classmethod
    def _names_a_folder(cls, value: str) -> str:
        if folder_user(value) is None:
            raise ValueError("userId must name one folder: 1-128 characters, no '/', '\\' "
                             "or NUL, not '.' or '..'")
        return value


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "document"
    return f"{where}: {err['msg']}"


Fields = TypeVar("Fields", bound=BaseModel)


def _validated(model: type[Fields], data: Mapping[str, Any] | None) -> Fields:
    """A document's fields as `model` reads them, or InvalidDocument saying what is wrong."""
    if not isinstance(data, Mapping):
        raise InvalidDocument("document has no fields")
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise InvalidDocument(_first_error(exc)) from exc


MAX_STREAK = 100
"""Times of one correction kept in `lastReconciliation.streak`, at most (the flap setting's
own bound)."""


@dataclass(frozen=True)
class LastCorrection:
    """What our last correction of a project left in its `lastReconciliation`: which
    correction it was (its fingerprint) and when the same one was written before, within the
    flap window: how many times another writer undid it."""

    fingerprint: str
    streak: tuple[datetime, ...]

    @classmethod
    def parse(cls, summary: object) -> LastCorrection | None:
        """None for a summary without them (older versions of ours wrote none): our own
        bookkeeping never makes a document invalid."""
        if not isinstance(summary, Mapping):
            return None
        fingerprint, streak = summary.get("fingerprint"), summary.get("streak")
        if not isinstance(fingerprint, str) or not isinstance(streak, list):
            return None
        times = tuple(_utc(t) for t in streak[-MAX_STREAK:] if isinstance(t, datetime))
        return cls(fingerprint, times)


@dataclass(frozen=True)
class Project:
    """A project document as the policy sees it."""

    id: str
    user_id: str
    status: ProjectStatus
    prompt_count: int
    claims: tuple[str | None, ...]
    """clipFilenames as stored: element i is the clip of prompt i ('' counts as empty)."""
    claim_objects: tuple[str | None, ...]
    """The object name each claim refers to, or None for an empty slot."""
    stitched: str | None
    stitched_object: str | None
    error_info: Mapping[str, Any] | None
    duration_seconds: int | None
    update_time: datetime
    opted_out: bool = False
    """Its owner asked us to keep off (the opt-out field is true): observed, never written."""
    last_correction: LastCorrection | None = None

    @classmethod
    def parse(
        cls, project_id: str, data: Mapping[str, Any] | None, update_time: datetime,
        location: Location, opt_out_field: str = OPT_OUT_FIELD,
    ) -> Project:
        fields = _validated(_ProjectFields, data)
        opted_out = (data or {}).get(opt_out_field)
        if opted_out is not None and not isinstance(opted_out, bool):
            raise InvalidDocument(f"{opt_out_field}: must be true or false, not "
                                  f"{type(opted_out).__name__}")
        claim_objects = tuple(
            location.object_name(claim) if claim else None for claim in fields.clipFilenames
        )
        stitched = fields.stitchedFilename or None
        return cls(
            id=project_id,
            user_id=fields.userId,
            status=fields.status,
            prompt_count=len(fields.promptList),
            claims=tuple(fields.clipFilenames),
            claim_objects=claim_objects,
            stitched=stitched,
            stitched_object=location.object_name(stitched) if stitched else None,
            error_info=fields.errorInfo,
            duration_seconds=fields.durationSeconds,
            update_time=_utc(update_time),
            opted_out=opted_out is True,
            last_correction=LastCorrection.parse((data or {}).get("lastReconciliation")),
        )


class _JobFields(BaseModel):
    model_config = ConfigDict(extra="ignore")

    projectId: str = Field(min_length=1)
    status: JobStatus
    promptCount: int | None = Field(default=None, ge=0, le=MAX_PROMPTS)
    createdAt: Timestamp | None = None
    startedAt: Timestamp | None = None
    updatedAt: Timestamp | None = None
    timedOutAt: Timestamp | None = None
    error: object = None


_TIMEOUT_PREFIX = "Job timed out after "
"""The app's own words for a job its cleanup failed; ours uses them too."""


def timeout_message(timeout: timedelta) -> str:
    """`Job timed out after 30 minutes`, as the app's cleanup words it."""
    seconds = int(timeout.total_seconds())
    if seconds % 60:
        return f"{_TIMEOUT_PREFIX}{seconds} seconds"
    return f"{_TIMEOUT_PREFIX}{seconds // 60} minutes"


@dataclass(frozen=True)
class Job:
    """A generation job document as the policy sees it."""

    id: str
    project_id: str
    status: JobStatus
    prompt_count: int | None
    created_at: datetime | None
    started_at: datetime | None
    updated_at: datetime | None
    update_time: datetime
    timed_out_at: datetime | None = None
    """Our timeout marker (server time): a sign of life after it is a zombie worker's."""
    error: str | None = None

    @classmethod
    def parse(cls, job_id: str, data: Mapping[str, Any] | None, update_time: datetime) -> Job:
        fields = _validated(_JobFields, data)
        return cls(
            id=job_id,
            project_id=fields.projectId,
            status=fields.status,
            prompt_count=fields.promptCount,
            created_at=_utc(fields.createdAt) if fields.createdAt else None,
            started_at=_utc(fields.startedAt) if fields.startedAt else None,
            updated_at=_utc(fields.updatedAt) if fields.updatedAt else None,
            update_time=_utc(update_time),
            timed_out_at=_utc(fields.timedOutAt) if fields.timedOutAt else None,
            error=fields.error if isinstance(fields.error, str) else None,
        )

    @property
    def timed_out(self) -> bool:
        """Failed by a timeout: ours (the marker) or the app's own cleanup (its words)."""
        return self.status == "failed" and (
            self.timed_out_at is not None
            or (self.error is not None and self.error.startswith(_TIMEOUT_PREFIX)))

    @property
    def last_sign_of_life(self) -> datetime | None:
        return self.updated_at or self.started_at or self.created_at

    @property
    def created(self) -> datetime:
        """When the job began, for ordering; the document's write time is the last resort."""
        return self.created_at or self.started_at or self.updated_at or self.update_time


@dataclass(frozen=True)
class InvalidJob:
    """A job document that did not parse; it still matters if it may be running."""

    id: str
    raw_status: object
    reason: str

    @property
    def may_be_active(self) -> bool:
        return self.raw_status in ACTIVE_JOB_STATUSES


@dataclass(frozen=True)
class ObjectInfo:
    """One GCS object, as a listing or a metadata read returns it."""

    name: str
    size: int
    updated: datetime
    generation: int = 0
    """GCS's version of the object (0 where unknown): a rewrite under the same name and size
    still changes the folder's fingerprint (reel_reconciler.engine.sweep.fingerprint)."""


