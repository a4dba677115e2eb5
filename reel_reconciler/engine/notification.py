"""GCS object notifications, read: which project a message is about, or why it is none's.

A bucket's notification configuration publishes one Pub/Sub message per object change, its
facts in the attributes (`eventType`, `bucketId`, `objectId`, `eventTime`, and
`overwrittenByGeneration` on the deletion half of an overwrite). Only a finalize or a delete
under `{root}/{userId}/{projectId}/` concerns a project; an overwrite's delete is followed by
the finalize of the new generation, so it is one change and the finalize carries it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from google.api_core.datetime_helpers import from_rfc3339

from reel_reconciler.model import Location, folder_user

FINALIZE, DELETE = "OBJECT_FINALIZE", "OBJECT_DELETE"


class Outcome(StrEnum):
    """What became of a message (a metric label): only `queued` reaches the work queue."""

    QUEUED = "queued"
    OVERWRITE = "overwrite"
    OTHER_EVENT = "other_event"
    OTHER_BUCKET = "other_bucket"
    OUTSIDE_PROJECTS = "outside_projects"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Routed:
    outcome: Outcome
    event_type: str
    """The message's event type, or "unknown" (a metric label: a bounded set in practice)."""
    project_id: str | None = None
    changed_at: datetime | None = None
    """When GCS says the object changed (`eventTime`), for the project's time to heal."""


_EVENT_TYPES = (FINALIZE, DELETE, "OBJECT_METADATA_UPDATE", "OBJECT_ARCHIVE")


def route(attributes: Mapping[str, str], location: Location) -> Routed:
    """The project a notification is about, or the outcome that says why it is none's."""
    event = attributes.get("eventType", "")
    label = event if event in _EVENT_TYPES else "unknown"
    bucket, name = attributes.get("bucketId"), attributes.get("objectId")
    if not event or not bucket or not name:
        return Routed(Outcome.MALFORMED, label)
    if event not in (FINALIZE, DELETE):
        return Routed(Outcome.OTHER_EVENT, label)
    if bucket != location.bucket:
        return Routed(Outcome.OTHER_BUCKET, label)
    if event == DELETE and attributes.get("overwrittenByGeneration"):
        return Routed(Outcome.OVERWRITE, label)
    root = location.root_prefix + "/"
    parts = name[len(root):].split("/", 2) if name.startswith(root) else []
    if len(parts) < 3 or not parts[2] or not all(folder_user(part) for part in parts[:2]):
        return Routed(Outcome.OUTSIDE_PROJECTS, label)
    return Routed(Outcome.QUEUED, label, parts[1], _event_time(attributes.get("eventTime")))


def _event_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed: datetime = from_rfc3339(value)  # type: ignore[no-untyped-call]
    except ValueError:
        return None
    return parsed


class ChangeTimes:
    """Event times of notified changes not reconciled yet, per project: the earliest one
    stands (the project has been wrong since then). Taken when the project is handled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[str, datetime] = {}

    def note(self, project_id: str, at: datetime) -> None:
        with self._lock:
            known = self._at.get(project_id)
            if known is None or at < known:
                self._at[project_id] = at

    def take(self, project_ids: Iterable[str]) -> dict[str, datetime]:
        with self._lock:
            return {project_id: self._at.pop(project_id) for project_id in project_ids
                    if project_id in self._at}
