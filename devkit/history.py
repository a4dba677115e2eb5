"""Every version of every project and job document, as a listener of our own records them.

The checker judges the reconciler from this record alone, not from what the reconciler says
of itself. Firestore listeners may fold two quick writes into one snapshot, so the record can
miss a version; the checker's rules only ever conclude a violation from versions it saw.

The record listens through the change feed (the Listen protocol, not the client's
`on_snapshot`): the emulator resends a whole collection after every write, and the client
re-sorts every document at each push. Over a soak the collections grow to thousands of
documents and that listener fell behind the writes; the emulator then buffered the unread
stream until it ran out of memory. The feed keeps each document's update time and decodes a
document only when it moved.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.cloud.firestore_v1.types import StructuredQuery, Target

from devkit.seed import World
from reel_reconciler.stores.changefeed import Change, ChangeFeed
from reel_reconciler.stores.connection import Connection, connect
from reel_reconciler.stores.values import decode


@dataclass(frozen=True)
class Version:
    """One state of a document: its server update time and its fields (None: deleted)."""

    collection: str
    doc_id: str
    update_time: datetime
    data: dict[str, Any] | None

    @property
    def ours(self) -> datetime | None:
        """When the reconciler decided the write that made this version, if it carries one."""
        summary = (self.data or {}).get("lastReconciliation") or {}
        at = summary.get("at")
        return at if isinstance(at, datetime) else None


class History:
    """Listens to both collections and keeps each document's versions in update-time order."""

    def __init__(self, world: World | None = None) -> None:
        self._world = world
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, str], dict[datetime, Version]] = defaultdict(dict)
        self._feeds: list[ChangeFeed] = []
        self._connection: Connection | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Subscribe (again, after a Firestore restart) on a client of its own, and wait for
        both listeners' first snapshot: a recorder that silently hears nothing would make
        every check pass."""
        self.stop()
        world = self._world
        assert world is not None, "a history without a world only takes record()"
        connection = self._connection = connect(world.db.project, "(default)")
        heard = {name: threading.Event() for name in ("projects", "jobs")}
        for name, collection in (("projects", world.projects_collection),
                                 ("jobs", world.jobs_collection)):
            everything = StructuredQuery(
                from_=[StructuredQuery.CollectionSelector(collection_id=collection)])
            target = {"query": Target.QueryTarget(parent=connection.documents,
                                                  structured_query=everything)}
            feed = ChangeFeed(connection, target, None, decode, self._callback(name, heard[name]))
            feed.start()
            self._feeds.append(feed)
        for name, event in heard.items():
            if not event.wait(timeout):
                raise RuntimeError(f"the history's {name} listener heard nothing in {timeout}s")

    def stop(self) -> None:
        for feed in self._feeds:
            feed.stop()
        self._feeds = []
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _callback(self, collection: str, heard: threading.Event) -> Any:
        def record(changes: list[Change]) -> None:
            heard.set()
            for change in changes:
                assert change.at is not None
                self.record(Version(collection, change.id, change.at,
                                    dict(change.data) if change.present else None))
        return record

    def record(self, version: Version) -> None:
        with self._lock:
            self._versions[(version.collection, version.doc_id)][version.update_time] = version

    def documents(self, collection: str) -> Iterator[str]:
        with self._lock:
            keys = [key for key in self._versions if key[0] == collection]
        for _, doc_id in keys:
            yield doc_id

    def versions(self, collection: str, doc_id: str) -> list[Version]:
        with self._lock:
            found = list(self._versions.get((collection, doc_id), {}).values())
        return sorted(found, key=lambda version: version.update_time)

    def count(self) -> int:
        with self._lock:
            return sum(len(versions) for versions in self._versions.values())
