"""Firestore's userId order against GCS's name order: user groups, and groups in folder order.

A sweep reads projects and jobs ordered by userId and the bucket ordered by name, and merges
them a user at a time. The two orders differ: GCS orders names by bytes, so `ab-c/` and
`ab.c/` sort before `ab/`, while Firestore puts `ab` first. These functions turn a
userId-ordered stream into user groups in the byte order of their folders `{userId}/`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from reel_reconciler.engine.sweep.ranges import WorkProfile
from reel_reconciler.model import folder_user
from reel_reconciler.stores.firestore import Document


@dataclass
class UserGroup:
    """Consecutive documents of one userId from a userId-ordered stream."""

    user: str | None
    """The userId if it can name a folder; None for a missing, non-string or unsafe one."""
    documents: list[Document]

    @property
    def folder(self) -> str:
        """`{userId}/`, the group's key in the listing's order ("" without a folder)."""
        return f"{self.user}/" if self.user is not None else ""


def user_groups(batches: Iterable[Sequence[Document]]) -> Iterator[UserGroup]:
    """Group a userId-ordered stream of documents by userId, in stream order."""
    current: list[Document] = []
    raw: object = None
    for batch in batches:
        for doc in batch:
            value = doc.data.get("userId") if doc.data else None
            if current and type(value) is type(raw) and value == raw:
                current.append(doc)
                continue
            if current:
                yield UserGroup(folder_user(raw), current)
            current, raw = [doc], value
    if current:
        yield UserGroup(folder_user(raw), current)


def in_folder_order(groups: Iterable[UserGroup]) -> Iterator[UserGroup]:
    """Reorder groups from Firestore's userId order into the byte order of `{userId}/`.

    The two orders differ only where one userId is a prefix of the next and the next
    continues with a byte below "/" (`ab` < `ab-c`, but `ab-c/` < `ab/`). Such a group is held
    until a userId comes whose folder sorts after it; the held groups form a chain of
    prefixes, so memory holds a few users, not a page of them. Groups without a folder pass
    straight through: nothing in the listing belongs to them.
    """
    held: list[UserGroup] = []
    for group in groups:
        if group.user is None:
            yield group
            continue
        while held and held[-1].folder < group.folder:
            yield held.pop()
        held.append(group)
    while held:
        yield held.pop()


def profiled(groups: Iterable[UserGroup], profile: WorkProfile) -> Iterator[UserGroup]:
    """The groups, unchanged, each user's project count noted (in userId order)."""
    for group in groups:
        if group.user is not None:
            profile.add(group.user, len(group.documents))
        yield group
