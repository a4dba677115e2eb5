"""The change log: one structured line for every write the reconciler attempts, so that what it
did to a document can be read back, and undone by hand, from the logs alone.

Each line names the document, the trigger and the drift kinds, holds every field written with
its value before (from the version that was read, left out when the field did not exist)
and after, the precondition the write carried and its outcome. A field stamped with the
server's time has `serverTime: true` instead of an `after`: the line's `updateTime` is the
new version's. Values are JSON: timestamps as RFC 3339 in UTC, bytes in base64. Ids are log
fields here, never metric labels; a correction is never an Event.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from google.cloud.firestore import GeoPoint

from reel_reconciler.logs import CHANGES
from reel_reconciler.model import DriftKind, ReconcilerId, Trigger
from reel_reconciler.stores.values import Reference

log = logging.getLogger(CHANGES)


class Outcome(StrEnum):
    WRITTEN = "written"
    CONFLICT = "conflict"
    """The precondition failed: someone wrote the document since it was read; nothing changed."""
    ERROR = "error"
    """The store failed; the write may not have landed."""


def rfc3339(stamp: datetime) -> str:
    """A timestamp as the log shows it: UTC, microseconds, `Z` (naive ones are UTC)."""
    aware = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def loggable(value: Any) -> Any:
    """A Firestore value as JSON."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Mapping):
        return {str(key): loggable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [loggable(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, GeoPoint):
        return {"latitude": value.latitude, "longitude": value.longitude}
    if isinstance(value, Reference):
        return value.path
    return repr(value)


def field_changes(before: Mapping[str, Any] | None, fields: Mapping[str, Any],
                  server_time: Collection[str]) -> dict[str, dict[str, Any]]:
    """Each field written, with its value before and after."""
    was = before or {}
    changes: dict[str, dict[str, Any]] = {}
    for name in [*fields, *(name for name in server_time if name not in fields)]:
        entry: dict[str, Any] = {}
        if name in was:
            entry["before"] = loggable(was[name])
        if name in server_time:
            entry["serverTime"] = True
        else:
            entry["after"] = loggable(fields[name])
        changes[name] = entry
    return changes


def record(*, document: str, doc_id: str, trigger: Trigger, drift: Sequence[DriftKind],
           before: Mapping[str, Any] | None, fields: Mapping[str, Any],
           server_time: Collection[str], precondition: datetime, outcome: Outcome,
           reconciler: ReconcilerId, attempt: int = 1, written: datetime | None = None,
           error: str | None = None, project_id: str | None = None, late: bool = False
           ) -> None:
    """The line of one write, whatever became of it. `document`: `project` or `job` (a job's
    line names its project too). `late`: a write whose answer was lost, known to have landed
    from a re-read (its new update time is not known)."""
    line: dict[str, Any] = {
        "reconciler": reconciler.label, "document": document,
        "projectId": project_id or doc_id, "trigger": trigger.value,
        "driftKinds": [kind.value for kind in drift],
        "fields": field_changes(before, fields, server_time),
        "precondition": {"updateTime": rfc3339(precondition)},
        "outcome": outcome.value, "attempt": attempt,
    }
    if project_id is not None:
        line["jobId"] = doc_id
    if written is not None:
        line["updateTime"] = rfc3339(written)
    if error is not None:
        line["error"] = error
    if late:
        line["foundOnReread"] = True
    message = {Outcome.WRITTEN: "written (its answer was lost; the re-read shows it)"
               if late else "written",
               Outcome.CONFLICT: "write refused: changed since read",
               Outcome.ERROR: "write failed"}[outcome]
    level = logging.WARNING if outcome is Outcome.ERROR else logging.INFO
    log.log(level, message, extra=line)
