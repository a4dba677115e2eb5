"""What a change feed knew when it stopped, so that the next feed on the same target picks up
from there instead of from nothing.

A listener restart (the scheduled one, or after silence) used to open a blank feed: its first
snapshot reported every matching document as new, and every project at rest in `error` was
reconciled again for nothing. A successor given this state asks the server to resume from the
resume token, and whatever the server sends (only the changes since, or everything again after
a reset or a refused token), reports only the documents whose update time moved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

Stamp = tuple[int, int]
"""A document's update time as (seconds, nanos): equal stamps, same version."""


@dataclass(frozen=True)
class Seen:
    """One member of a feed's result set, as last seen."""

    stamp: Stamp
    data: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True)
class FeedState:
    """The members as of the feed's last consistent snapshot, and the token that resumes right
    after it (None: the successor listens afresh and compares what it is sent)."""

    members: Mapping[str, Seen]
    resume_token: bytes | None

    def without_token(self) -> FeedState:
        """For a feed whose stream broke: its token is not trusted, its members still are."""
        return FeedState(self.members, None)


def unchanged(known: Seen | None, stamp: Stamp) -> TypeGuard[Seen]:
    """Whether a document sent with update time `stamp` is the version already known: such a
    document is not news, neither within a stream (the emulator resends every match after each
    write) nor in the first snapshot after a restart."""
    return known is not None and known.stamp == stamp
