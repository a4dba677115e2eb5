"""Settings from flags and the environment, validated once (DESIGN.md §4-§5)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.model import Location, PolicySettings

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(ValueError):
    """Configuration the controller cannot start with; the message says what to set."""


def parse_duration(value: Any) -> timedelta:
    """Go/Flux-style durations ("30s", "5m", "1h30m"), or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value and _DURATION_PART.sub("", value) == "":
        seconds = sum(float(num) * _UNITS[unit] for num, unit in _DURATION_PART.findall(value))
    else:
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m or 1h")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative")
    return timedelta(seconds=seconds)


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Everything one reconciler needs: where the data is, how hard to push, how long to wait."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True,
                                      env_ignore_empty=True)

    gcp_project: str | None = Field(
        default=None, validation_alias=_env("gcp_project", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")
    )
    database: str = Field(
        default="(default)", validation_alias=_env("database", "REEL_FIRESTORE_DATABASE")
    )
    bucket: str | None = Field(
        default=None,
        validation_alias=_env(
            "bucket", "REEL_BUCKET", "REEL_MAKER_GCS_BUCKET", "VIDEO_GENERATION_BUCKET",
            "VIDEO_STORAGE_BUCKET",
        ),
    )
    root_prefix: str = Field(
        default="reel-maker", min_length=1, pattern=r"^[^/].*[^/]$|^[^/]$",
        validation_alias=_env("root_prefix", "REEL_ROOT_PREFIX"),
    )
    projects_collection: str = Field(
        default="reel_maker_projects", min_length=1,
        validation_alias=_env("projects_collection", "REEL_PROJECTS_COLLECTION"),
    )
    jobs_collection: str = Field(
        default="reel_maker_jobs", min_length=1,
        validation_alias=_env("jobs_collection", "REEL_JOBS_COLLECTION"),
    )
    stale_timeout: timedelta = Field(
        default=timedelta(minutes=30), validation_alias=_env("stale_timeout", "REEL_STALE_TIMEOUT")
    )
    settle: timedelta = Field(
        default=timedelta(seconds=30), validation_alias=_env("settle", "REEL_SETTLE")
    )
    stitch_timeout: timedelta | None = Field(
        default=None, validation_alias=_env("stitch_timeout", "REEL_STITCH_TIMEOUT")
    )
    """How long a `stitching` project is left to its stitcher; unset: the stale timeout."""
    request_timeout: float = Field(
        default=10.0, gt=0, le=300,
        validation_alias=_env("request_timeout", "REEL_REQUEST_TIMEOUT"),
    )
    retry_deadline: float = Field(
        default=15.0, gt=0, le=600, validation_alias=_env("retry_deadline", "REEL_RETRY_DEADLINE")
    )
    page_size: int = Field(
        default=300, ge=1, le=1_000_000, validation_alias=_env("page_size", "REEL_PAGE_SIZE")
    )
    """Documents per Firestore query of a sweep's streams. A page is pulled in batches, so
    memory does not grow with it; an emulator that scans the collection per query (no
    indexes) is the only reason to raise it."""
    gcs_page_size: int = Field(
        default=1000, ge=1, le=1000, validation_alias=_env("gcs_page_size", "REEL_GCS_PAGE_SIZE")
    )
    concurrency: int = Field(
        default=8, ge=1, le=256, validation_alias=_env("concurrency", "REEL_CONCURRENCY")
    )
    max_attempts: int = Field(
        default=3, ge=1, le=20, validation_alias=_env("max_attempts", "REEL_MAX_ATTEMPTS")
    )

    @field_validator("stale_timeout", "settle", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("stitch_timeout", mode="before")
    @classmethod
    def _optional_duration(cls, value: Any) -> timedelta | None:
        return None if value is None else parse_duration(value)

    @property
    def location(self) -> Location:
        if not self.bucket:
            raise ConfigError(
                "no bucket configured: pass --bucket or set REEL_BUCKET "
                "(or the app's REEL_MAKER_GCS_BUCKET / VIDEO_GENERATION_BUCKET / "
                "VIDEO_STORAGE_BUCKET)"
            )
        return Location(bucket=self.bucket, root_prefix=self.root_prefix)

    @property
    def policy(self) -> PolicySettings:
        return PolicySettings(location=self.location, stale_after=self.stale_timeout,
                              settle=self.settle, stitch_after=self.stitch_timeout)


def load_settings(**overrides: Any) -> Settings:
    """Flags (non-None overrides) win over the environment; errors become ConfigError."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid setting {where}: {err['msg']}") from exc
    settings.location  # noqa: B018 - validates that a bucket is configured
    return settings


class _SpecPart(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FirestoreSpec(_SpecPart):
    project: str | None = None
    database: str = "(default)"
    projects_collection: str = Field(default="reel_maker_projects", alias="projectsCollection",
                                     min_length=1)
    jobs_collection: str = Field(default="reel_maker_jobs", alias="jobsCollection", min_length=1)


class StorageSpec(_SpecPart):
    bucket: str = Field(min_length=3, max_length=222)
    root_prefix: str = Field(default="reel-maker", alias="rootPrefix", min_length=1)


class SweepSpec(_SpecPart):
    interval: timedelta = timedelta(minutes=30)

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class StaleJobsSpec(_SpecPart):
    interval: timedelta = timedelta(minutes=5)
    timeout: timedelta = timedelta(minutes=30)

    @field_validator("interval", "timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class ListenersSpec(_SpecPart):
    """Watchdog timing; the defaults suit production, tests shorten them."""

    heartbeat_interval: timedelta = Field(default=timedelta(seconds=5), alias="heartbeatInterval")
    silence_threshold: timedelta = Field(default=timedelta(seconds=30), alias="silenceThreshold")
    resubscribe_interval: timedelta = Field(default=timedelta(minutes=30),
                                            alias="resubscribeInterval")
    heartbeat_collection: str = Field(default="reel_reconciler_heartbeats",
                                      alias="heartbeatCollection", min_length=1)

    @field_validator("heartbeat_interval", "silence_threshold", "resubscribe_interval",
                     mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class ReconcilerSpec(_SpecPart):
    """The spec of a ReelReconciler (DESIGN.md §5), validated once per change."""

    firestore: FirestoreSpec = Field(default_factory=FirestoreSpec)
    storage: StorageSpec
    mode: Literal["Enforce", "Observe"] = "Enforce"
    suspend: bool = False
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    stale_jobs: StaleJobsSpec = Field(default_factory=StaleJobsSpec, alias="staleJobs")
    settle: timedelta = timedelta(seconds=30)
    concurrency: int = Field(default=8, ge=1, le=256)
    rate_limit: float = Field(default=500.0, gt=0, le=10_000, alias="rateLimit")
    """Listener-triggered reconciles started per second, at most: a burst of events must not
    turn into a burst of Firestore reads and writes. The default is the rate Firestore's
    ramp-up guidance (500/50/5) lets new traffic start at; bursts are read in batches."""
    listeners: ListenersSpec = Field(default_factory=ListenersSpec)

    @field_validator("settle", mode="before")
    @classmethod
    def _settle(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @classmethod
    def parse(cls, spec: Any) -> ReconcilerSpec:
        try:
            return cls.model_validate(dict(spec or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "spec"
            raise ConfigError(f"invalid spec.{where}: {err['msg']}") from exc

    @property
    def observe(self) -> bool:
        return self.mode == "Observe"

    def settings(self) -> Settings:
        """Engine settings; the environment still supplies timeouts and page sizes."""
        return load_settings(
            gcp_project=self.firestore.project, database=self.firestore.database,
            bucket=self.storage.bucket, root_prefix=self.storage.root_prefix,
            projects_collection=self.firestore.projects_collection,
            jobs_collection=self.firestore.jobs_collection,
            stale_timeout=self.stale_jobs.timeout, settle=self.settle,
            concurrency=self.concurrency)
