"""The settings every command takes as flags: where the data is, how hard to push, how long to
wait. Their defaults and environment variables are `Settings`' own, shown by `--help` as they
are when it runs, never written out here."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from datetime import timedelta

from pydantic import AliasChoices

from reel_reconciler.config import (
    ConfigError,
    Settings,
    flag_for,
    format_duration,
    load_settings,
)
from reel_reconciler.logs import add_log_arguments
from reel_reconciler.usage import OneLineParser, invalid


@dataclass(frozen=True)
class Fallback:
    """An option's default as `--help` shows it (`%(default)s`), but not a value the user
    gave: a flag left out still lets the environment, then the default, decide."""

    value: object

    def __str__(self) -> str:
        if isinstance(self.value, timedelta):
            return format_duration(self.value)
        if isinstance(self.value, float) and self.value.is_integer():
            return str(int(self.value))
        return str(self.value)


def given(value: object) -> object:
    """What the user passed, or None when the flag was left out."""
    return None if isinstance(value, Fallback) else value


# Values stay strings here: Settings validates flags and environment variables alike, so a
# bad value reads the same whichever way it came (`invalid --stale-timeout 'banana': ...`).
SETTING_FLAGS: list[tuple[str, str, str]] = [
    ("gcp_project", "PROJECT", "GCP project"),
    ("database", "NAME", "Firestore database"),
    ("bucket", "NAME", "GCS bucket"),
    ("root_prefix", "PREFIX", "object prefix of the app"),
    ("projects_collection", "NAME", "projects collection"),
    ("jobs_collection", "NAME", "jobs collection"),
    ("stale_timeout", "DURATION", "a queued/processing job silent this long is stale: a "
     "duration such as 30s, 5m or 1h"),
    ("request_timeout", "SECONDS", "seconds per request"),
    ("retry_deadline", "SECONDS", "seconds to keep retrying a failing request"),
    ("page_size", "N", "Firestore projects per page"),
    ("gcs_page_size", "N", "GCS objects per list page"),
    ("concurrency", "N", "projects reconciled at once"),
    ("settle", "DURATION", "automatic triggers skip a project written this recently, and a "
     "`generating` one is left to its starting job even when forced; 0s: no window"),
    ("stitch_timeout", "DURATION", "a `stitching` project is the stitcher's this long; unset: "
     "the stale timeout"),
    ("max_destructive", "N", "destructive corrections (a claimed clip emptied, a stitched reel "
     "dropped, a ready project demoted) allowed per --destructive-window before the breaker "
     "trips and pauses them; 0: none"),
    ("destructive_window", "DURATION", "the breaker's window"),
    ("opt_out_field", "NAME", "a project whose document has this field set to true is "
     "reported, never written, nor are its jobs"),
    ("flap_corrections", "N", "a project whose corrections another writer undid this many "
     "times within --flap-window is held"),
    ("flap_window", "DURATION", "the window in which undone corrections count"),
    ("flap_hold", "DURATION", "a flapping project is retried this long after its last "
     "correction"),
]


def _environment(field: str) -> str:
    """The variables a setting reads, in the order `Settings` tries them."""
    alias = Settings.model_fields[field].validation_alias
    names = [c for c in alias.choices if isinstance(c, str)] if isinstance(
        alias, AliasChoices) else []
    return ", then ".join(names)


def _add_setting(parser: argparse.ArgumentParser, dest: str, metavar: str, text: str) -> None:
    default = Settings.model_fields[dest].get_default(call_default_factory=True)
    shown = f"{_environment(dest)} or %(default)s" if default is not None else _environment(dest)
    parser.add_argument(flag_for(dest), dest=dest, metavar=metavar,
                        default=Fallback(default) if default is not None else None,
                        help=f"{text} (default: {shown})")


def settings_parent(log_level: str) -> argparse.ArgumentParser:
    """Where the data is and how hard to push: every command's options."""
    parent = OneLineParser(add_help=False)
    for dest, metavar, text in SETTING_FLAGS:
        _add_setting(parent, dest, metavar, text)
    add_log_arguments(parent, log_level)
    return parent


def settings_of(args: argparse.Namespace) -> Settings:
    """Flags given win over the environment, the environment over the defaults."""
    return load_settings(**{dest: given(getattr(args, dest)) for dest, _, _ in SETTING_FLAGS})


def flag_or_env(flag: str, value: object, env: str | None) -> tuple[str, str | None]:
    """The value given to a flag, else its environment variable's (empty counts as unset),
    with the name it came from for an error message."""
    if (chosen := given(value)) is not None:
        return flag, str(chosen)
    if env is None:
        return flag, None
    return env, os.environ.get(env) or None


def count(flag: str, value: object, env: str | None, default: int, most: int) -> int:
    """A whole number from its flag, else its environment variable, else the default; raises
    ConfigError naming where a bad one came from."""
    where, given_value = flag_or_env(flag, value, env)
    if given_value is None:
        return default
    try:
        number = int(given_value)
    except ValueError:
        number = 0
    if not 1 <= number <= most:
        raise ConfigError(invalid(where, f"expected a whole number from 1 to {most}",
                                  given_value))
    return number
