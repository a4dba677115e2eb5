"""What reconciling needs of the two stores: the adapters in `reel_reconciler.stores` provide it
against Firestore and GCS, and the engine's unit tests against memory."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from reel_reconciler.model import ObjectInfo
from reel_reconciler.stores import RequestLog
from reel_reconciler.stores.firestore import Bounds, Document


class ProjectStore(Protocol):
    """Projects and their jobs; every write is guarded by the update time it was decided on."""

    requests: RequestLog

    def get_projects(self, project_ids: Sequence[str]) -> dict[str, Document]:
        """The existing ones among `project_ids`."""
        ...

    def jobs_of_projects(self, project_ids: Sequence[str]) -> dict[str, list[Document]]:
        """Every job of each project, in id order."""
        ...

    def update_project(self, project_id: str, fields: Mapping[str, Any],
                       read_update_time: datetime) -> datetime:
        """Raises Conflict if the document changed since `read_update_time`; returns the new
        version's update time."""
        ...

    def update_projects(self, updates: Mapping[str, tuple[Mapping[str, Any], datetime]]
                        ) -> dict[str, datetime]:
        """All or nothing; raises Conflict if any document changed since its read. Returns
        each document's new update time."""
        ...

    def breaker(self, collection: str, name: str) -> Document | None:
        """The breaker's document (reel_reconciler.engine.breaker)."""
        ...

    def put_breaker(self, collection: str, name: str, fields: Mapping[str, Any],
                    read_update_time: datetime | None) -> datetime:
        """Created where none is, else only over the version read; raises Conflict."""
        ...


class ObjectStore(Protocol):
    """The bucket, read only."""

    requests: RequestLog

    def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        """Every object under `prefix`."""
        ...

    def any_under(self, prefix: str) -> bool:
        """Whether any object's name starts with `prefix`."""
        ...

    def stat(self, name: str) -> ObjectInfo | None:
        """One object's metadata, or None if it does not exist."""
        ...


@runtime_checkable
class StreamedProjects(ProjectStore, Protocol):
    """What a sweep reads of Firestore besides the per-project reads: whole collections (or
    one userId range of them) as streams of batches in (userId, id) order."""

    def projects_by_user(self, page_size: int, fields: Sequence[str] | None = None,
                         key_range: Bounds | None = None) -> Iterator[list[Document]]:
        ...

    def jobs_by_user(self, page_size: int, fields: Sequence[str],
                     key_range: Bounds | None = None) -> Iterator[list[Document]]:
        ...

    def active_jobs(self) -> list[Document]:
        ...

    def count_projects(self) -> int:
        ...

    def projects_without_user(self, page_size: int, strings_only: bool = False
                              ) -> Iterator[str]:
        ...


@runtime_checkable
class DeltaReads(StreamedProjects, Protocol):
    """What a delta round reads of Firestore besides a sweep's streams: the documents of a few
    users, the projects not at rest, and documents of our own kept with preconditions."""

    def projects_of_users(self, users: Sequence[str], fields: Sequence[str] | None = None
                          ) -> list[Document]:
        ...

    def jobs_of_users(self, users: Sequence[str], fields: Sequence[str]) -> list[Document]:
        ...

    def projects_not_at_rest(self) -> list[str]:
        ...

    def count_by_status(self, statuses: Sequence[str]) -> dict[str, int]:
        ...

    def own_document(self, collection: str, name: str, op: str,
                     fields: Sequence[str] | None = None) -> Document | None:
        ...

    def put_own_document(self, collection: str, name: str, fields: Mapping[str, Any],
                         read_update_time: datetime | None, op: str) -> datetime:
        ...


@runtime_checkable
class ListedObjects(ObjectStore, Protocol):
    """The bucket listed in name order, one page (one request) at a time."""

    def listing(self, prefix: str, start: str | None = None,
                end: str | None = None) -> Iterator[list[ObjectInfo]]:
        ...
