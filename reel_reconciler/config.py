"""Settings from flags and the environment, validated once; the duration types and the error
wording they share with the ReelReconciler spec (reel_reconciler.spec)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from reel_reconciler import defaults
from reel_reconciler.model import WRITTEN_FIELDS, Location, PolicySettings, _ProjectFields
from reel_reconciler.usage import invalid

_DURATION = re.compile(r"(-)?((?:\d+(?:\.\d+)?(?:ms|s|m|h))+)")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_EXAMPLES = "such as 30s, 5m or 1h"


class ConfigError(ValueError):
    """Configuration the controller cannot start with; the message says what to set."""


def parse_duration(value: Any, *, allow_zero: bool = False) -> timedelta:
    """Go/Flux-style durations ("30s", "5m", "1h30m"), or a number of seconds (YAML). Timeouts
    and intervals must be more than 0: a zero timeout would fail every live job, a zero
    interval would spin. Only a window (the settle window) may be 0, meaning none."""
    text = value.strip() if isinstance(value, str) else ""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif match := _DURATION.fullmatch(text):
        sign = -1.0 if match.group(1) else 1.0
        seconds = sign * sum(float(num) * _UNITS[unit]
                             for num, unit in _DURATION_PART.findall(match.group(2)))
    elif _NUMBER.fullmatch(text) and float(text) > 0:
        raise ValueError(f"a duration needs a unit, e.g. {text}s, {text}m or {text}h")
    elif _NUMBER.fullmatch(text):
        seconds = float(text)
    else:
        raise ValueError(f"not a duration {_EXAMPLES}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("must be 0s (none) or more" if allow_zero
                         else f"must be more than 0, {_EXAMPLES}")
    return timedelta(seconds=seconds)


def _window(value: Any) -> timedelta:
    return parse_duration(value, allow_zero=True)


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
OURS = frozenset(_ProjectFields.model_fields) | frozenset(WRITTEN_FIELDS)
"""Project fields the app or the reconciler already gives a meaning."""


def opt_out_field(value: Any) -> str:
    """A top-level field name of its own: a plain identifier (no path into a map), and not a
    field the app or we already use for something else."""
    if not isinstance(value, str) or not _FIELD_NAME.fullmatch(value):
        raise ValueError("a top-level field name: up to 128 letters, digits or _, not "
                         "starting with a digit, e.g. reconcilerOptOut")
    if value in OURS:
        raise ValueError(f"{value} is a field of the project already; choose a name of its "
                         "own, e.g. reconcilerOptOut")
    return value


OptOutField = Annotated[str, BeforeValidator(opt_out_field)]
"""The opt-out field's name, checked the same way in flags, variables and the spec."""
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A timeout or an interval: more than 0."""
Window = Annotated[timedelta, BeforeValidator(_window)]
"""A window that may be 0 (none), such as the settle window."""


def problem_of(err: ErrorDetails) -> str:
    """Pydantic's message without its "Value error, " prefix, starting lower-case."""
    cause = (err.get("ctx") or {}).get("error")
    text = str(cause) if err["type"] == "value_error" and cause else err["msg"]
    return text[:1].lower() + text[1:]


def value_of(err: ErrorDetails) -> object:
    """The value a validation error was about, if the user gave one."""
    return None if err["type"] == "missing" else err.get("input")


def _env(*names: str) -> AliasChoices:
    """The environment variables a setting reads (upper case only: a bare field name such as
    DATABASE or BUCKET in the environment is someone else's); the field name itself stays
    valid as a keyword argument through populate_by_name."""
    return AliasChoices(*(name for name in names if name.isupper()))


class Settings(BaseSettings):
    """Everything one reconciler needs: where the data is, how hard to push, how long to wait.
    Every default is `reel_reconciler.defaults`' (read when a Settings is made): none here."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True,
                                      env_ignore_empty=True, case_sensitive=True)

    gcp_project: str | None = Field(
        default=None, validation_alias=_env("gcp_project", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")
    )
    database: str = Field(
        default_factory=lambda: defaults.DATABASE,
        validation_alias=_env("database", "REEL_FIRESTORE_DATABASE")
    )
    bucket: str | None = Field(
        default=None,
        validation_alias=_env(
            "bucket", "REEL_BUCKET", "REEL_MAKER_GCS_BUCKET", "VIDEO_GENERATION_BUCKET",
            "VIDEO_STORAGE_BUCKET",
        ),
    )
    root_prefix: str = Field(
        default_factory=lambda: defaults.ROOT_PREFIX, min_length=1, pattern=r"^[^/].*[^/]$|^[^/]$",
        validation_alias=_env("root_prefix", "REEL_ROOT_PREFIX"),
    )
    projects_collection: str = Field(
        default_factory=lambda: defaults.PROJECTS_COLLECTION, min_length=1,
        validation_alias=_env("projects_collection", "REEL_PROJECTS_COLLECTION"),
    )
    jobs_collection: str = Field(
        default_factory=lambda: defaults.JOBS_COLLECTION, min_length=1,
        validation_alias=_env("jobs_collection", "REEL_JOBS_COLLECTION"),
    )
    stale_timeout: Duration = Field(
        default_factory=lambda: defaults.STALE_TIMEOUT,
        validation_alias=_env("stale_timeout", "REEL_STALE_TIMEOUT")
    )
    settle: Window = Field(
        default_factory=lambda: defaults.SETTLE, validation_alias=_env("settle", "REEL_SETTLE")
    )
    stitch_timeout: Duration | None = Field(
        default=None, validation_alias=_env("stitch_timeout", "REEL_STITCH_TIMEOUT")
    )
    """How long a `stitching` project is left to its stitcher; unset: the stale timeout."""
    request_timeout: float = Field(
        default_factory=lambda: defaults.REQUEST_TIMEOUT, gt=0, le=300,
        validation_alias=_env("request_timeout", "REEL_REQUEST_TIMEOUT"),
    )
    retry_deadline: float = Field(
        default_factory=lambda: defaults.RETRY_DEADLINE, gt=0, le=600,
        validation_alias=_env("retry_deadline", "REEL_RETRY_DEADLINE")
    )
    page_size: int = Field(
        default_factory=lambda: defaults.PAGE_SIZE, ge=1, le=1_000_000,
        validation_alias=_env("page_size", "REEL_PAGE_SIZE")
    )
    """Documents per Firestore query of a sweep's streams. A page is pulled in batches, so
    memory does not grow with it; an emulator that scans the collection per query (no
    indexes) is the only reason to raise it."""
    gcs_page_size: int = Field(
        default_factory=lambda: defaults.GCS_PAGE_SIZE, ge=1, le=1000,
        validation_alias=_env("gcs_page_size", "REEL_GCS_PAGE_SIZE")
    )
    concurrency: int = Field(
        default_factory=lambda: defaults.CONCURRENCY, ge=1, le=256,
        validation_alias=_env("concurrency", "REEL_CONCURRENCY")
    )
    max_destructive: int = Field(
        default_factory=lambda: defaults.MAX_DESTRUCTIVE, ge=0, le=100_000,
        validation_alias=_env("max_destructive", "REEL_MAX_DESTRUCTIVE"))
    """Destructive corrections allowed per `destructive_window` before the breaker trips (0:
    none at all). There is no "off": a breaker that trips on a wrong bucket is the point."""
    destructive_window: Duration = Field(
        default_factory=lambda: defaults.DESTRUCTIVE_WINDOW,
        validation_alias=_env("destructive_window", "REEL_DESTRUCTIVE_WINDOW"))
    breaker_collection: str = Field(
        default_factory=lambda: defaults.BREAKER_COLLECTION, min_length=1,
        validation_alias=_env("breaker_collection", "REEL_BREAKER_COLLECTION"))
    fingerprint_collection: str = Field(
        default_factory=lambda: defaults.FINGERPRINT_COLLECTION, min_length=1,
        validation_alias=_env("fingerprint_collection", "REEL_FINGERPRINT_COLLECTION"))
    max_attempts: int = Field(
        default_factory=lambda: defaults.MAX_ATTEMPTS, ge=1, le=20,
        validation_alias=_env("max_attempts", "REEL_MAX_ATTEMPTS")
    )
    opt_out_field: OptOutField = Field(
        default_factory=lambda: defaults.OPT_OUT_FIELD,
        validation_alias=_env("opt_out_field", "REEL_OPT_OUT_FIELD"),
    )
    """A project document with this field true is observed and reported, never written."""
    flap_corrections: int = Field(
        default_factory=lambda: defaults.FLAP_CORRECTIONS, ge=1, le=100,
        validation_alias=_env("flap_corrections", "REEL_FLAP_CORRECTIONS"))
    """Corrections of one project that another writer may undo within the flap window;
    when this many were undone, the project is held."""
    flap_window: Duration = Field(
        default_factory=lambda: defaults.FLAP_WINDOW,
        validation_alias=_env("flap_window", "REEL_FLAP_WINDOW"))
    flap_hold: Duration = Field(
        default_factory=lambda: defaults.FLAP_HOLD,
        validation_alias=_env("flap_hold", "REEL_FLAP_HOLD"))
    """How long a flapping project is held, from its last correction."""

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
                              settle=self.settle, stitch_after=self.stitch_timeout,
                              opt_out_field=self.opt_out_field,
                              flap_corrections=self.flap_corrections,
                              flap_window=self.flap_window, flap_hold=self.flap_hold)


def flag_for(field: str) -> str:
    """The CLI spells every setting as --field-name."""
    return "--" + field.replace("_", "-")


def _env_name(field: str) -> str:
    """The environment variable that supplied a setting (the first set of its choices, as
    pydantic-settings reads them: case-insensitively)."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    choices = [c for c in alias.choices if isinstance(c, str)] if isinstance(
        alias, AliasChoices) else [field]
    present = {name.lower(): name for name, value in os.environ.items() if value}
    return next((present[c.lower()] for c in choices if c.lower() in present), choices[0])


def check_emulator_hosts(environ: Mapping[str, str] | None = None) -> None:
    """The two emulator variables want different spellings; a wrong one fails deep inside a
    client library, so say it here: STORAGE_EMULATOR_HOST is a URL, FIRESTORE_EMULATOR_HOST
    is host:port."""
    env = os.environ if environ is None else environ
    storage = env.get("STORAGE_EMULATOR_HOST", "").strip()
    if storage and not storage.startswith(("http://", "https://")):
        raise ConfigError(invalid("STORAGE_EMULATOR_HOST", "include the scheme, e.g. "
                                  f"STORAGE_EMULATOR_HOST=http://{storage}", storage))
    firestore = env.get("FIRESTORE_EMULATOR_HOST", "").strip()
    if "/" in firestore:
        bare = firestore.split("://", 1)[-1].split("/", 1)[0]
        raise ConfigError(invalid("FIRESTORE_EMULATOR_HOST", "give host:port without a "
                                  f"scheme, e.g. FIRESTORE_EMULATOR_HOST={bare}", firestore))


def load_settings(**overrides: Any) -> Settings:
    """Flags (non-None overrides) win over the environment; errors become ConfigError naming
    the flag or the environment variable the bad value came from."""
    check_emulator_hosts()
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        where = flag_for(field) if field in given else _env_name(field)
        raise ConfigError(invalid(where, problem_of(err), value_of(err))) from exc
    settings.location  # noqa: B018 - validates that a bucket is configured
    return settings


def format_duration(value: timedelta) -> str:
    """A duration the way `parse_duration` reads it back and a person writes it: 30m, 1h30m,
    0s."""
    millis = round(value.total_seconds() * 1000)
    seconds, ms = divmod(millis, 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s"), (ms, "ms"))
             if n]
    return "".join(parts) or "0s"
