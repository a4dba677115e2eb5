"""A change feed on Firestore's Listen RPC: which documents entered, changed in or left a
query's result set, with only the fields we ask for decoded.

The client's `on_snapshot` keeps a full snapshot: it decodes and copies every changed
document, copies its document map and re-sorts every matched document at each push. The
emulator answers each write with a reset and every matching document again, so in a burst of
1,000 stuck projects that was most of the reconciler's CPU (bench/RESULTS.md), for listeners
that only enqueue ids. The feed speaks the same protocol through the same api_core bidi
helpers (reconnect, resume token, reset, filter count) on the generated transport's `listen`
callable, and keeps only each member's update time and requested fields: a resent document
whose update time did not move is no change."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.bidi import BackgroundConsumer, ResumableBidiRpc
from google.cloud.firestore_v1.types.firestore import ListenRequest, TargetChange

from reel_reconciler.stores.connection import Connection
from reel_reconciler.stores.feedstate import FeedState, Seen, unchanged
from reel_reconciler.stores.values import timestamp

log = logging.getLogger(__name__)

TARGET_ID = 0x5252  # "RR": any id works, the stream carries one target
_RECOVERABLE = (
    gexc.Aborted, gexc.Cancelled, gexc.Unknown, gexc.DeadlineExceeded,
    gexc.ResourceExhausted, gexc.InternalServerError, gexc.ServiceUnavailable,
    gexc.Unauthenticated,
)
_Kind = TargetChange.TargetChangeType


@dataclass(frozen=True)
class Change:
    """A document that entered or changed in the result set (`present`), or left it (deleted,
    or no longer matching). `data` holds the requested fields: the new values, or the last
    ones seen for a document that left."""

    id: str
    present: bool
    data: Mapping[str, Any]
    at: datetime | None = field(default=None, compare=False)
    """The new version's update time; for a document that left, the snapshot's read time."""


OnChanges = Callable[[list[Change]], None]
Decode = Callable[[Any], Any]
"""Turns a Firestore `Value` protobuf into a Python value."""


def _wrap(error: Any) -> Any:
    return gexc.from_grpc_error(error) if hasattr(error, "code") and callable(error.code) \
        else error


def _recoverable(error: Any) -> bool:
    return isinstance(_wrap(error), _RECOVERABLE)


def _terminal(error: Any) -> bool:
    return isinstance(_wrap(error), gexc.Cancelled)


QUICK_REOPENS = 4
"""Reopens in place without an answer in between before a stream is let end: api_core asks
twice about one failure (its receiving thread and gRPC's callback), so this is two failures."""


class Recovery:
    """Whether a broken stream ends rather than being reopened in place (api_core's
    ResumableBidiRpc asks on every error, before it asks whether to recover). It reopens at
    once, with no pause, and each attempt starts a thread; against a server that refuses every
    connection it would spin for as long as the server is down, and on after `close()`
    (which does not stop a reopen driven by gRPC's callback). So a stream that is not
    answered between failures, or that we closed, ends; the listener watchdog restarts it
    with its backoff."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self._unanswered = 0
        self._lock = threading.Lock()

    def answered(self) -> None:
        with self._lock:
            self._unanswered = 0

    def __call__(self, error: Any) -> bool:
        if _terminal(error) or self.closed.is_set():
            return True
        with self._lock:
            self._unanswered += 1
            return self._unanswered > QUICK_REOPENS


class ChangeFeed:
    """One Listen stream on one target. `on_changes` runs on the feed's thread for the first
    consistent snapshot, then for each one with changes; it must be quick (it only enqueues,
    in our use).

    `last_event` is when the server last said anything, changes or not; `error` is set when
    the stream ended for good or the protocol broke (the listener watchdog restarts then). A
    filter count that disagrees with ours (missed removals) makes the feed listen again.

    Given the `state` of a stopped feed on the same target, the first snapshot reports only
    what changed since that feed's last one (`skipped` counts the members it did not report).
    """

    def __init__(self, connection: Connection, target: Mapping[str, Any],
                 fields: Sequence[str] | None, decode: Decode, on_changes: OnChanges,
                 state: FeedState | None = None,
                 billed: Callable[[int], None] | None = None) -> None:
        """`target` is a `Target`'s `query` or `documents` as a mapping, without its id;
        `fields` the ones to decode (None: every field); `billed` is told the documents
        each snapshot is billed as reads."""
        self._connection = connection
        self._target = dict(target, target_id=TARGET_ID)
        self._fields = None if fields is None else tuple(fields)
        self._decode = decode
        self._on_changes = on_changes
        self._members: dict[str, Seen] = {} if state is None else dict(state.members)
        self._members_lock = threading.Lock()
        """Held while a snapshot is applied, so that `view` copies a whole one."""
        self._pending: dict[str, Seen | None] = {}
        """Since the last consistent snapshot: what was sent per document (None: it left)."""
        self._current = False
        self._reported = False
        self._resume_token = None if state is None else state.resume_token
        if self._resume_token is None:  # a fresh Listen: members not sent again have left
            self._pending = dict.fromkeys(self._members)
        self._refused = False
        """The server removed our target while we resumed: the token was refused once."""
        self.skipped = 0
        """Members the first snapshot did not report: unchanged since the state handed in."""
        self._rpc: ResumableBidiRpc | None = None
        self._recovery = Recovery()
        self._consumer: BackgroundConsumer | None = None
        self._lifecycle = threading.RLock()
        self.last_event = 0.0
        self.error: BaseException | None = None
        self._billed = billed
        self._fresh = self._resume_token is None
        """The connection listens without a resume token: its first snapshot resends (and
        bills) every match."""
        self.connections = 0
        """Connections made (the first and every reopen in place)."""

    @property
    def resume_token(self) -> bytes | None:
        """Where the next connection resumes; None after a reset or a filter mismatch."""
        return self._resume_token

    @property
    def members(self) -> frozenset[str]:
        """The ids of the documents in the set as of the last consistent snapshot."""
        return frozenset(self._members)

    def view(self) -> dict[str, Seen] | None:
        """A copy of the members with their requested fields, as of the last consistent
        snapshot, once this feed has applied one and while its stream is live (None
        otherwise). A reset in between does not withdraw it: the emulator resets after every
        write, and the members stay the last consistent snapshot until the next one."""
        if not (self._reported and self.is_active):
            return None
        with self._members_lock:
            return dict(self._members)

    @property
    def is_active(self) -> bool:
        consumer = self._consumer
        return consumer is not None and consumer.is_active and self.error is None

    def start(self) -> None:
        with self._lifecycle:
            self._open()

    def stop(self) -> None:
        """Close the stream; not from the feed's own thread (it joins that thread)."""
        with self._lifecycle:
            self._close()

    def _open(self) -> None:
        self._recovery = Recovery()
        rpc = ResumableBidiRpc(
            start_rpc=self._connection.api.transport.listen,
            should_recover=_recoverable, should_terminate=self._recovery,
            initial_request=self._request, metadata=self._connection.metadata)
        rpc.add_done_callback(lambda future: self._on_done(rpc, future))
        self._rpc = rpc
        self._consumer = BackgroundConsumer(rpc, self._on_response)
        self._consumer.start()

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        rpc, self._rpc = self._rpc, None
        self._recovery.closed.set()
        if consumer is not None:
            consumer.stop()
        if rpc is not None:
            rpc.close()

    def state(self) -> FeedState:
        """What a successor needs to pick up after the last consistent snapshot; call it once
        the feed is stopped. A feed whose stream broke hands on its members, not its token."""
        state = FeedState(dict(self._members), self._resume_token)
        return state if self.error is None else state.without_token()

    def relisten(self) -> None:
        """Listen again from scratch (after a filter mismatch): the server resends every
        match, and the members it does not resend are reported gone."""
        with self._lifecycle:
            if self._consumer is None:  # stopped meanwhile
                return
            self._close()
            self._open()

    def _request(self) -> ListenRequest:
        """The first request of every (re)connection: resume where the last snapshot ended."""
        target = dict(self._target)
        self.connections += 1
        self._fresh = self._resume_token is None
        if self._resume_token is not None:
            target["resume_token"] = self._resume_token
        return ListenRequest(database=self._connection.database, add_target=target)

    def _on_done(self, rpc: ResumableBidiRpc, future: Any) -> None:
        if rpc is not self._rpc:  # a stream we closed ourselves
            return
        self.error = _wrap(future) if isinstance(future, BaseException) else RuntimeError(
            f"listen stream ended: {future}")

    def _on_response(self, response: Any) -> None:
        if response is None:  # a stream ended: its thread exits, `is_active` says so
            return
        self._recovery.answered()
        self.last_event = time.time()
        try:
            if not self.handle(type(response).pb(response)):
                log.info("listen state lost (filter mismatch, refused token), listening again",
                         extra={"target": str(self._target)[:200]})
                threading.Thread(target=self.relisten, name="change-feed-relisten",
                                 daemon=True).start()
        except Exception as exc:
            self.error = exc
            log.exception("change feed broke", extra={"target": str(self._target)[:200]})
            if self._consumer is not None:
                threading.Thread(target=self.stop, name="change-feed-stop", daemon=True).start()

    def handle(self, pb: Any) -> bool:
        """Apply one response (a raw ListenResponse protobuf), as the stream's thread does;
        False when the stream must be listened again from scratch."""
        which = pb.WhichOneof("response_type")
        if which == "target_change":
            return self._target_change(pb.target_change)
        elif which == "document_change":
            change = pb.document_change
            doc_id = self._id(change.document.name)
            if TARGET_ID in change.target_ids:
                self._pending[doc_id] = self._seen(doc_id, change.document)
            elif TARGET_ID in change.removed_target_ids:
                self._pending[doc_id] = None
        elif which == "document_delete":
            self._pending[self._id(pb.document_delete.document)] = None
        elif which == "document_remove":
            self._pending[self._id(pb.document_remove.document)] = None
        elif which == "filter":
            if pb.filter.count != self._size():
                self.forget()
                return False
        else:
            raise RuntimeError(f"unknown listen response: {which}")
        return True

    def _target_change(self, change: Any) -> bool:
        kind = change.target_change_type
        if kind != _Kind.NO_CHANGE:
            log.debug("listen target change", extra={"kind": _Kind(kind).name,
                                                     "members": len(self._members)})
        if kind == _Kind.NO_CHANGE:
            if not change.target_ids and change.HasField("read_time") and self._current:
                self._flush(change.resume_token, timestamp(change.read_time))
        elif kind == _Kind.ADD:
            if list(change.target_ids) != [TARGET_ID]:
                raise RuntimeError(f"unexpected target ids {list(change.target_ids)}")
        elif kind == _Kind.REMOVE:
            return self._removed(change)
        elif kind == _Kind.RESET:
            self.forget()
        elif kind == _Kind.CURRENT:
            self._current = True
        return True

    def _removed(self, change: Any) -> bool:
        """The server dropped our target. While resuming that may be a token too old to
        honour: listen afresh once, keeping the members to compare against; else it is an
        error for the watchdog."""
        if self._resume_token is not None and not self._refused:
            self._refused = True
            log.info("resume token refused, listening afresh",
                     extra={"target": str(self._target)[:200], "cause": change.cause.message})
            self.forget()
            return False
        code = change.cause.code or 13
        raise gexc.from_grpc_status(code, change.cause.message or "target removed")

    def forget(self) -> None:
        """Whatever was sent so far no longer holds: every member is gone unless resent (what
        a reset or a filter mismatch does)."""
        self._pending = dict.fromkeys(self._members)
        self._current = False
        self._resume_token = None

    def _flush(self, resume_token: bytes, read_time: datetime) -> None:
        """A consistent snapshot: apply the pending changes and report the effective ones."""
        changes: list[Change] = []
        with self._members_lock:
            for doc_id, seen in self._pending.items():
                known = self._members.get(doc_id)
                if seen is None:
                    if known is not None:
                        del self._members[doc_id]
                        changes.append(Change(doc_id, False, known.data, read_time))
                elif seen is not known:
                    self._members[doc_id] = seen
                    changes.append(Change(doc_id, True, seen.data, seen.at))
        self._pending = {}
        self._resume_token = resume_token
        self._bill(changes)
        log.debug("listen snapshot", extra={"members": len(self._members), "changes": len(changes),
                                            "left": sum(not c.present for c in changes)})
        if changes or not self._reported:
            if not self._reported:
                self.skipped = len(self._members) - sum(change.present for change in changes)
            self._reported = True  # the first snapshot is news even when empty: we are live
            self._on_changes(changes)

    def _bill(self, changes: list[Change]) -> None:
        """Listen bills a read per document added, changed or removed by a change, and a
        fresh Listen (no resume token) every match again, at least one read. The
        emulator's resends of unchanged documents after each write are not billed by
        Firestore, so they are not counted."""
        if self._billed is None:
            return
        if self._fresh:
            self._fresh = False
            self._billed(max(1, len(self._members)))
        elif changes:
            self._billed(len(changes))

    def _size(self) -> int:
        """How many documents match, as the server counts them: members plus pending."""
        size = len(self._members)
        for doc_id, seen in self._pending.items():
            known = doc_id in self._members
            size += (seen is not None and not known) - (seen is None and known)
        return size

    def _seen(self, doc_id: str, document: Any) -> Seen:
        """The member as known when its update time is unchanged (the emulator resends every
        match after each write), else the new version with its requested fields decoded."""
        stamp = (document.update_time.seconds, document.update_time.nanos)
        known = self._members.get(doc_id)
        if unchanged(known, stamp):
            return known
        fields = document.fields
        names = fields.keys() if self._fields is None else self._fields
        return Seen(stamp, {name: self._decode(fields[name]) for name in names if name in fields},
                     timestamp(document.update_time))

    @staticmethod
    def _id(name: str) -> str:
        return name.rpartition("/")[2]
