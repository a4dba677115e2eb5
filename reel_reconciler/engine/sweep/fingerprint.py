"""Fingerprints of user folders: what a delta round compares to know whose storage changed.

A folder's fingerprint is a short hash of the (name, generation, size) of every object under
`{root}/{userId}/`, in name order. A listing hands a range's objects out in name order, and
the objects of one folder come together in it (every name between two names that start with
`ab/` starts with `ab/` too), so a folder's hash is complete when the next folder starts.

A range's fingerprints are stored as one compact value (`encode`): per user a length, the
userId's UTF-8 bytes and an 8-byte digest, compressed. 8 bytes make an unnoticed change of one
folder a 1 in 2^64 event; a folder hashed no other way is DIRTY, which no real hash equals,
so that it is read again at the next round.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from reel_reconciler.model import ObjectInfo

DIGEST_BYTES = 8
DIRTY = b"\0" * DIGEST_BYTES
"""Stored for a user whose last reconcile was not settled (reel_reconciler.engine.sweep.delta):
it differs from every folder's hash, so the user is read again."""
FORMAT = 1
MAX_ENCODED = 900_000
"""Bytes of encoded fingerprints one document may hold: a Firestore document is at most
1 MiB, and the rest of the fields need a little room."""
_LENGTH = struct.Struct(">H")

K = TypeVar("K")


class TooMany(ValueError):
    """A range's fingerprints do not fit in one document."""


class Malformed(ValueError):
    """Stored fingerprints that cannot be decoded."""


def folder_of(root: str, name: str) -> str | None:
    """The userId whose folder holds object `name`, None for a name outside any folder."""
    if not name.startswith(root):
        return None
    user, slash, _ = name[len(root):].partition("/")
    return user if slash and user else None


class Fingerprinter:
    """Hashes a name-ordered listing under `root` (ending in "/") folder by folder."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.prints: dict[str, bytes] = {}
        self._user: str | None = None
        self._hash = hashlib.blake2b(digest_size=DIGEST_BYTES)

    def add(self, obj: ObjectInfo) -> tuple[str, bytes] | None:
        """Take the next object; returns the folder this one closed, with its hash."""
        user = folder_of(self.root, obj.name)
        if user is None:
            return None
        closed = None
        if user != self._user:
            closed = self.close()
            if user in self.prints:
                raise ValueError(f"listing not in name order: folder {user!r} seen twice")
            self._user = user
        self._hash.update(b"%s\0%d\0%d\n" % (obj.name.encode(), obj.generation, obj.size))
        return closed

    def close(self) -> tuple[str, bytes] | None:
        """End the open folder (at the end of the listing); returns it with its hash."""
        if self._user is None:
            return None
        user, digest = self._user, self._hash.digest()
        self.prints[user] = digest
        self._user = None
        self._hash = hashlib.blake2b(digest_size=DIGEST_BYTES)
        return user, digest

    def tap(self, pages: Iterable[list[ObjectInfo]]) -> Iterator[list[ObjectInfo]]:
        """The pages unchanged, each object hashed on the way; the last folder closes when the
        listing ends."""
        for page in pages:
            for obj in page:
                self.add(obj)
            yield page
        self.close()


def fingerprint(root: str, objects: Iterable[ObjectInfo]) -> dict[str, bytes]:
    """Every folder's hash of a name-ordered listing."""
    prints = Fingerprinter(root)
    for _ in prints.tap([list(objects)]):
        pass
    return prints.prints


def differs(stored: Mapping[str, bytes], user: str, digest: bytes | None) -> bool:
    """Whether `user`'s folder (None: no folder now) is not as stored, or was stored DIRTY."""
    before = stored.get(user)
    return before != digest or before == DIRTY


def changed(stored: Mapping[str, bytes], current: Mapping[str, bytes]) -> set[str]:
    """Users whose folder changed, appeared or vanished (or was stored DIRTY)."""
    return {user for user in stored.keys() | current.keys()
            if differs(stored, user, current.get(user))}


def encode(prints: Mapping[str, bytes]) -> bytes:
    """The compact stored form; raises TooMany when it would not fit in a document."""
    parts = []
    for user in sorted(prints):
        raw = user.encode()
        digest = prints[user]
        if len(digest) != DIGEST_BYTES or len(raw) > 0xFFFF:
            raise ValueError(f"cannot encode the fingerprint of {user!r}")
        parts += [_LENGTH.pack(len(raw)), raw, digest]
    packed = zlib.compress(b"".join(parts), 6)
    if len(packed) > MAX_ENCODED:
        raise TooMany(f"{len(prints)} users' fingerprints take {len(packed)} bytes, more than "
                      f"{MAX_ENCODED}")
    return packed


def decode(packed: bytes) -> dict[str, bytes]:
    """What `encode` made; raises Malformed on anything else."""
    try:
        raw = zlib.decompress(packed)
    except zlib.error as exc:
        raise Malformed(f"fingerprints do not decompress: {exc}") from exc
    prints: dict[str, bytes] = {}
    at = 0
    while at < len(raw):
        if at + _LENGTH.size > len(raw):
            raise Malformed("fingerprints end inside a length")
        (length,) = _LENGTH.unpack_from(raw, at)
        at += _LENGTH.size
        end = at + length + DIGEST_BYTES
        if end > len(raw):
            raise Malformed("fingerprints end inside an entry")
        try:
            user = raw[at:at + length].decode()
        except UnicodeDecodeError as exc:
            raise Malformed(f"a userId in the fingerprints is not UTF-8: {exc}") from exc
        prints[user] = raw[at + length:end]
        at = end
    return prints


def due_for_full(due_at: Mapping[K, datetime | None], now: datetime, interval: timedelta,
                 full_every: timedelta) -> set[K]:
    """The ranges a round passes in full: those without usable fingerprints (None) and those
    whose full pass falls due before the round after this one would be halfway there. With
    `full_every` no longer than `interval`, every range, every round."""
    if full_every <= interval:
        return set(due_at)
    horizon = now + interval / 2
    return {key for key, due in due_at.items() if due is None or due <= horizon}


def next_due(now: datetime, full_every: timedelta, position: int | None, count: int
             ) -> datetime:
    """When a range passed in full now is due again: `full_every` later; a range passed in
    full for want of fingerprints (`position` its index among `count` ranges) sooner, by its
    place, so that ranges all passed in full at once (the first round) fall due one after
    another, never all in the same round again."""
    if position is None:
        return now + full_every
    return now + full_every * (position + 1) / count


def dirty(prints: dict[str, bytes], users: Collection[str]) -> dict[str, bytes]:
    """`prints` with `users` marked to be read again next round (those found only now too)."""
    for user in users:
        prints[user] = DIRTY
    return prints
