"""Each range's folder fingerprints in a Firestore document of our own, one per (reconciler,
range), written only over the version read (or created where none is).

A document that is missing, unreadable, of another format or undecodable is no fingerprint
at all: the range gets a full pass, which writes a good one. A range whose users do not fit
in one document (reel_reconciler.engine.sweep.fingerprint.MAX_ENCODED, about 28,000 users of
28-character ids) is stored as `overflow`: it is passed in full at every round, and a warning
asks for more ranges; splitting the document would buy little over more, smaller ranges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reel_reconciler.engine.stores import DeltaReads
from reel_reconciler.engine.sweep import fingerprint
from reel_reconciler.engine.sweep.ranges import KeyRange
from reel_reconciler.stores import Conflict, StoreError

log = logging.getLogger(__name__)

SCHEDULE_FIELDS = ("format", "overflow", "dueAt")
"""What a range's document says of its schedule, without the fingerprints' bytes."""


@dataclass(frozen=True)
class Stored:
    """What a range's document says, and the version to write over."""

    update_time: datetime | None
    """None: no document yet (the next write creates it)."""
    prints: dict[str, bytes] | None
    """None: no usable fingerprints (missing, unreadable, malformed or overflowing)."""
    full_at: datetime | None
    """When the range was last passed in full (None: never, as far as we know)."""
    due_at: datetime | None
    """When its next full pass is due (None: now)."""
    problem: str | None = None
    """Why `prints` is None, for the warning; None when there was simply no document."""


class FingerprintStore:
    def __init__(self, firestore: DeltaReads, collection: str, reconciler: str) -> None:
        self.firestore = firestore
        self.collection = collection
        self.reconciler = reconciler

    def name(self, key_range: KeyRange) -> str:
        """The range's document id: bounds are made of [0-9A-Za-z], so `~` separates them."""
        return f"{self.reconciler}~{key_range.lo}~{key_range.hi or ''}"

    def load(self, key_range: KeyRange) -> Stored:
        name = self.name(key_range)
        try:
            doc = self.firestore.own_document(self.collection, name, "get_fingerprints")
        except StoreError as exc:
            return Stored(None, None, None, None, f"unreadable: {exc}")
        if doc is None:
            return Stored(None, None, None, None)
        data = doc.data or {}
        full_at, due_at = (value if isinstance(value := data.get(key), datetime) else None
                           for key in ("fullAt", "dueAt"))
        if data.get("format") != fingerprint.FORMAT:
            problem = f"format {data.get('format')!r}"
        elif data.get("overflow") is True:
            problem = "too many users for one document"
        elif not isinstance(packed := data.get("prints"), bytes) or due_at is None:
            problem = "no fingerprints or no due time"
        else:
            try:
                return Stored(doc.update_time, fingerprint.decode(packed), full_at, due_at)
            except fingerprint.Malformed as exc:
                problem = str(exc)
        return Stored(doc.update_time, None, full_at, None, problem)

    def due(self, key_range: KeyRange) -> datetime | None:
        """When the range's next full pass is due, from the document's small fields alone
        (a coordinator choosing passes needs no fingerprints); None: now, for want of a
        usable document. Fingerprints that do not decode are the worker's to find: it then
        passes the range in full."""
        try:
            doc = self.firestore.own_document(self.collection, self.name(key_range),
                                              "get_fingerprint_due", SCHEDULE_FIELDS)
        except StoreError as exc:
            log.warning("fingerprints unreadable: range passed in full", extra={
                "reconciler": self.reconciler, "range": str(key_range), "reason": str(exc)})
            return None
        data = {} if doc is None else doc.data or {}
        due_at = data.get("dueAt")
        usable = data.get("format") == fingerprint.FORMAT and data.get("overflow") is not True
        return due_at if usable and isinstance(due_at, datetime) else None

    def save(self, key_range: KeyRange, prints: dict[str, bytes], full_at: datetime | None,
             due_at: datetime, read: Stored) -> bool:
        """Write the range's fingerprints over the version `read`; False (and a warning) when
        another writer came first or Firestore failed: the next round reads what is there."""
        fields: dict[str, Any] = {"format": fingerprint.FORMAT, "reconciler": self.reconciler,
                                  "lo": key_range.lo, "hi": key_range.hi, "users": len(prints),
                                  "fullAt": full_at, "dueAt": due_at}
        try:
            fields |= {"prints": fingerprint.encode(prints), "overflow": False}
        except fingerprint.TooMany as exc:
            log.warning("range passed in full at every round: raise sweep.ranges",
                        extra={"reconciler": self.reconciler, "range": str(key_range),
                               "reason": str(exc)})
            fields |= {"prints": None, "overflow": True}
        try:
            self.firestore.put_own_document(self.collection, self.name(key_range), fields,
                                            read.update_time, "put_fingerprints")
        except (Conflict, StoreError) as exc:
            log.warning("fingerprints not saved", extra={
                "reconciler": self.reconciler, "range": str(key_range), "error": str(exc)})
            return False
        return True
