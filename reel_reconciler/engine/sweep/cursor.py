"""One cursor over a name-ordered stream, asked for one prefix at a time in ascending order.

The sweep walks the bucket listing and the jobs stream beside the projects stream, both in
folder order: each is asked for a user's folder, hands out what lies under it, and passes
over what lies before it (nothing of the sweep's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from typing import Generic, TypeVar

from reel_reconciler.engine.sweep.order import UserGroup
from reel_reconciler.model import ObjectInfo
from reel_reconciler.stores.firestore import Document

T = TypeVar("T")


class OrderedCursor(Generic[T]):
    """Items (never None) sorted by a string key, handed out by key prefix; prefixes come in
    ascending order. A prefix the cursor may already have passed gets None, never a partial
    answer: absence is not inferred from a stream that could no longer have shown the item."""

    def __init__(self, items: Iterable[T], key: Callable[[T], str]) -> None:
        self._items: Iterator[T] = iter(items)
        self._key = key
        self._next: T | None = None
        self._done = False
        self._passed: str | None = None

    def _peek(self) -> T | None:
        if self._next is None and not self._done:
            self._next = next(self._items, None)
            self._done = self._next is None
        return self._next

    def take(self, prefix: str) -> list[T] | None:
        """Every item whose key starts with `prefix`, or None if the cursor is past it."""
        if self._passed is not None and self._passed >= prefix:
            return None
        found: list[T] = []
        while (item := self._peek()) is not None:
            key = self._key(item)
            inside = key.startswith(prefix)
            if not inside and key > prefix:
                break
            self._next = None
            self._passed = key
            if inside:
                found.append(item)
        return found

    def drain(self) -> None:
        """Read the stream to its end, handing out nothing."""
        while self._peek() is not None:
            self._next = None


class FolderListing:
    """The bucket listing, page by page, handed out one user folder at a time."""

    def __init__(self, pages: Iterable[Sequence[ObjectInfo]]) -> None:
        self._cursor = OrderedCursor(chain.from_iterable(pages), key=lambda obj: obj.name)

    def take(self, prefix: str) -> list[ObjectInfo] | None:
        """Every object under `prefix`, or None if the listing has gone past its start."""
        return self._cursor.take(prefix)

    def drain(self) -> None:
        """List to the end: the folders after the last user's still pass what watches the
        pages (a delta round's fingerprints)."""
        self._cursor.drain()


class JobsByUser:
    """The jobs stream, grouped by user in folder order, handed out one user at a time."""

    def __init__(self, groups: Iterable[UserGroup]) -> None:
        self._cursor = OrderedCursor((group for group in groups if group.user is not None),
                                     key=lambda group: group.folder)

    def take(self, user: str) -> list[Document] | None:
        """The user's jobs, or None if the stream may have passed them (read per project)."""
        groups = self._cursor.take(f"{user}/")
        return None if groups is None else [doc for group in groups for doc in group.documents]
