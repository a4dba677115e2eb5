"""The change feed's protocol handling, fed the Listen RPC's own response messages.

Resets and filter counts are the server's call: the emulator sends neither on demand, so
these cases drive the feed with the protobufs the server would send. The feed against the
real emulator is in tests/integration/test_listeners.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud.firestore_v1.types.firestore import ListenResponse, TargetChange
from google.protobuf import timestamp_pb2

from reel_reconciler.stores.changefeed import TARGET_ID, Change, ChangeFeed
from reel_reconciler.stores.feedstate import FeedState

PREFIX = "projects/p/databases/(default)/documents/jobs/"
Kind = TargetChange.TargetChangeType


def decode(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value_type"))


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[Change]] = []

    def __call__(self, changes: list[Change]) -> None:
        self.batches.append(changes)


def feed(state: FeedState | None = None) -> tuple[ChangeFeed, Recorder]:
    recorder = Recorder()
    return ChangeFeed(None, {"query": {}}, ["projectId"], decode, recorder, state), recorder


def raw(**response: Any) -> Any:
    """A ListenResponse as the feed receives it: the raw protobuf, through proto-plus's `pb`."""
    return ListenResponse.pb(ListenResponse(**response))


def send(target: ChangeFeed, **response: Any) -> None:
    target.handle(raw(**response))


def changed(doc_id: str, project: str = "p-1", *, removed: bool = False,
            version: int = 1) -> dict[str, Any]:
    ids = {"removed_target_ids" if removed else "target_ids": [TARGET_ID]}
    return {"document_change": {"document": {
        "name": PREFIX + doc_id, "update_time": timestamp_pb2.Timestamp(seconds=version),
        "fields": {"projectId": {"string_value": project},
                   "status": {"string_value": "processing"}}},
        **ids}}


def target(kind: Any, **extra: Any) -> dict[str, Any]:
    return {"target_change": {"target_change_type": kind, **extra}}


def consistent(token: bytes = b"t") -> dict[str, Any]:
    """The global NO_CHANGE with a read time: the end of one consistent snapshot."""
    return target(Kind.NO_CHANGE, read_time=timestamp_pb2.Timestamp(seconds=1),
                  resume_token=token)


def initial(target_feed: ChangeFeed, *doc_ids: str) -> None:
    send(target_feed, **target(Kind.ADD, target_ids=[TARGET_ID]))
    for doc_id in doc_ids:
        send(target_feed, **changed(doc_id, project=f"p-{doc_id}"))
    send(target_feed, **target(Kind.CURRENT, target_ids=[TARGET_ID]))
    send(target_feed, **consistent())


def test_initial_members_arrive_as_one_batch_with_only_the_requested_fields() -> None:
    f, seen = feed()
    initial(f, "a", "b")
    assert seen.batches == [[Change("a", True, {"projectId": "p-a"}),
                             Change("b", True, {"projectId": "p-b"})]]


def test_the_first_snapshot_is_reported_even_when_empty_later_empty_ones_are_not() -> None:
    f, seen = feed()
    initial(f)
    assert seen.batches == [[]]
    send(f, **consistent(b"t2"))
    assert seen.batches == [[]]


def test_nothing_is_reported_before_the_target_is_current() -> None:
    f, seen = feed()
    send(f, **target(Kind.ADD, target_ids=[TARGET_ID]))
    send(f, **changed("a"))
    send(f, **consistent())
    assert seen.batches == []
    send(f, **target(Kind.CURRENT, target_ids=[TARGET_ID]))
    send(f, **consistent())
    assert [c.id for c in seen.batches[0]] == ["a"]


def test_a_document_leaving_reports_the_fields_last_seen() -> None:
    f, seen = feed()
    initial(f, "a", "b")
    send(f, **changed("a", removed=True))
    send(f, **{"document_delete": {"document": PREFIX + "b"}})
    send(f, **consistent(b"t2"))
    assert seen.batches[-1] == [Change("a", False, {"projectId": "p-a"}),
                                Change("b", False, {"projectId": "p-b"})]
    assert f.resume_token == b"t2"


def test_leaving_a_set_never_joined_is_not_a_change() -> None:
    f, seen = feed()
    initial(f, "a")
    send(f, **{"document_remove": {"document": PREFIX + "stranger"}})
    send(f, **consistent())
    assert len(seen.batches) == 1


def test_a_reset_reports_the_members_the_server_does_not_resend_as_gone() -> None:
    f, seen = feed()
    initial(f, "a", "b", "c")
    send(f, **target(Kind.RESET, target_ids=[TARGET_ID]))
    assert f.resume_token is None
    send(f, **changed("b", project="p-b"))
    send(f, **changed("c", project="p-c2", version=2))
    send(f, **consistent())
    assert seen.batches == [seen.batches[0]]  # not current again yet: nothing reported
    send(f, **target(Kind.CURRENT, target_ids=[TARGET_ID]))
    send(f, **consistent())
    assert seen.batches[-1] == [Change("a", False, {"projectId": "p-a"}),
                                Change("c", True, {"projectId": "p-c2"})]


def test_a_resent_document_is_a_change_only_when_its_update_time_moved() -> None:
    """The emulator resends every match after each write: only real changes get reported."""
    f, seen = feed()
    initial(f, "a", "b")
    send(f, **changed("a", project="p-a"))
    send(f, **changed("b", project="p-b", version=5))
    send(f, **consistent())
    assert seen.batches[-1] == [Change("b", True, {"projectId": "p-b"})]
    send(f, **changed("a", project="p-a"))
    send(f, **changed("b", project="p-b", version=5))
    send(f, **consistent())
    assert len(seen.batches) == 2


def test_a_filter_count_that_disagrees_starts_over_and_one_that_agrees_does_not() -> None:
    f, seen = feed()
    initial(f, "a", "b")
    send(f, **changed("c"))
    assert f.handle(raw(filter={"target_id": TARGET_ID, "count": 3}))
    assert not f.handle(raw(filter={"target_id": TARGET_ID, "count": 2}))
    assert f.resume_token is None  # the stream is opened again without it
    # the server resends what matches: the member it leaves out is reported gone
    send(f, **target(Kind.ADD, target_ids=[TARGET_ID]))
    send(f, **changed("b", project="p-b"))
    send(f, **target(Kind.CURRENT, target_ids=[TARGET_ID]))
    send(f, **consistent())
    assert seen.batches[-1] == [Change("a", False, {"projectId": "p-a"})]


def test_a_removed_target_raises_the_servers_cause() -> None:
    f, _ = feed()
    with pytest.raises(Exception, match="no permission"):
        send(f, **target(Kind.REMOVE, target_ids=[TARGET_ID],
                         cause={"code": 7, "message": "no permission"}))


def test_no_field_list_decodes_every_field_and_changes_carry_their_times() -> None:
    """The soak's recorder: whole documents, each version at its update time, and a document
    that left at the read time of the snapshot that saw it go."""
    recorder = Recorder()
    f = ChangeFeed(None, {"query": {}}, None, decode, recorder)
    initial(f, "a")
    [[first]] = recorder.batches
    assert first.data == {"projectId": "p-a", "status": "processing"}
    assert first.at is not None
    assert first.at.timestamp() == 1
    send(f, **changed("a", removed=True))
    send(f, **target(Kind.NO_CHANGE, read_time=timestamp_pb2.Timestamp(seconds=7),
                     resume_token=b"u"))
    [gone] = recorder.batches[-1]
    assert not gone.present
    assert gone.at is not None
    assert gone.at.timestamp() == 7


def predecessor() -> FeedState:
    """A stopped feed that saw members a, b and c, its last snapshot ending at token `t`."""
    f, _ = feed()
    initial(f, "a", "b", "c")
    return f.state()


def test_a_successor_resumed_from_the_token_reports_only_the_changes_sent() -> None:
    """Firestore's answer to a resume token: only what changed since, then current."""
    state = predecessor()
    assert state.resume_token == b"t"
    f, seen = feed(state)
    assert f.resume_token == b"t"  # what the first request sends
    send(f, **target(Kind.ADD, target_ids=[TARGET_ID]))
    send(f, **changed("b", project="p-b2", version=2))
    send(f, **{"document_remove": {"document": PREFIX + "c"}})
    send(f, **target(Kind.CURRENT, target_ids=[TARGET_ID]))
    send(f, **consistent(b"t2"))
    assert seen.batches == [[Change("b", True, {"projectId": "p-b2"}),
                             Change("c", False, {"projectId": "p-c"})]]
    assert f.skipped == 1  # a: neither sent nor changed


def test_a_successor_sent_every_match_again_skips_those_whose_update_time_held() -> None:
    """The emulator's answer to a resume token: a reset and every match again."""
    f, seen = feed(predecessor())
    send(f, **target(Kind.ADD, target_ids=[TARGET_ID]))
    send(f, **target(Kind.RESET, target_ids=[TARGET_ID]))
    send(f, **changed("a", project="p-a"))
    send(f, **changed("b", project="p-b2", version=2))
    send(f, **changed("d", project="p-d"))
    send(f, **target(Kind.CURRENT, target_ids=[TARGET_ID]))
    send(f, **consistent(b"t2"))
    assert seen.batches == [[Change("b", True, {"projectId": "p-b2"}),
                             Change("c", False, {"projectId": "p-c"}),
                             Change("d", True, {"projectId": "p-d"})]]
    assert f.skipped == 1


def test_a_successor_of_a_broken_feed_listens_afresh_and_compares() -> None:
    """A stream that broke hands on its members but not its token: members the fresh Listen
    does not send again have left."""
    old, _ = feed()
    initial(old, "a", "b", "c")
    old.error = RuntimeError("listen stream ended")
    state = old.state()
    assert state.resume_token is None
    assert set(state.members) == {"a", "b", "c"}
    f, seen = feed(state)
    assert f.resume_token is None
    send(f, **target(Kind.ADD, target_ids=[TARGET_ID]))
    send(f, **changed("a", project="p-a"))
    send(f, **changed("b", project="p-b"))
    send(f, **target(Kind.CURRENT, target_ids=[TARGET_ID]))
    send(f, **consistent(b"t2"))
    assert seen.batches == [[Change("c", False, {"projectId": "p-c"})]]
    assert f.skipped == 2


def test_a_refused_resume_token_listens_afresh_once_and_a_second_removal_raises() -> None:
    f, seen = feed(predecessor())
    assert not f.handle(raw(**target(Kind.REMOVE, target_ids=[TARGET_ID],
                                      cause={"code": 9, "message": "token too old"})))
    assert f.resume_token is None  # the stream is opened again without it
    send(f, **target(Kind.ADD, target_ids=[TARGET_ID]))
    send(f, **changed("a", project="p-a"))
    send(f, **changed("b", project="p-b"))
    send(f, **changed("c", project="p-c"))
    send(f, **target(Kind.CURRENT, target_ids=[TARGET_ID]))
    send(f, **consistent(b"t2"))
    assert seen.batches == [[]]
    assert f.skipped == 3
    g, _ = feed(predecessor())
    g.handle(raw(**target(Kind.REMOVE, target_ids=[TARGET_ID], cause={"code": 9})))
    with pytest.raises(Exception, match="target removed"):
        send(g, **target(Kind.REMOVE, target_ids=[TARGET_ID], cause={"code": 9}))


# What the feed is billed: Listen bills each document that enters, changes or leaves, and a
# Listen without a resume token every match again.

def billed_feed(state: FeedState | None = None) -> tuple[ChangeFeed, list[int]]:
    billed: list[int] = []
    return ChangeFeed(None, {"query": {}}, ["projectId"], decode, Recorder(), state,
                      billed=billed.append), billed


def test_a_fresh_listen_is_billed_every_match_then_each_change() -> None:
    f, billed = billed_feed()
    initial(f, "a", "b", "c")
    assert billed == [3]
    send(f, **changed("a", version=1))  # the emulator resending an unchanged document
    send(f, **consistent(b"t2"))
    assert billed == [3], "a resend of an unchanged document is not a read"
    send(f, **changed("b", project="p-b2", version=2))
    send(f, **{"document_remove": {"document": PREFIX + "c"}})
    send(f, **consistent(b"t3"))
    assert billed == [3, 2]


def test_an_empty_fresh_listen_is_billed_one_read() -> None:
    f, billed = billed_feed()
    initial(f)
    assert billed == [1]


def test_a_resumed_listen_is_billed_only_what_changed_and_a_broken_ones_successor_all() -> None:
    resumed, billed = billed_feed(predecessor())
    send(resumed, **target(Kind.ADD, target_ids=[TARGET_ID]))
    send(resumed, **changed("b", project="p-b2", version=2))
    send(resumed, **target(Kind.CURRENT, target_ids=[TARGET_ID]))
    send(resumed, **consistent(b"t2"))
    assert billed == [1]
    old, _ = feed()
    initial(old, "a", "b", "c")
    old.error = RuntimeError("listen stream ended")
    fresh, billed = billed_feed(old.state())
    send(fresh, **target(Kind.ADD, target_ids=[TARGET_ID]))
    send(fresh, **changed("a", project="p-a"))
    send(fresh, **changed("b", project="p-b"))
    send(fresh, **target(Kind.CURRENT, target_ids=[TARGET_ID]))
    send(fresh, **consistent(b"t2"))
    assert billed == [2], "a Listen without a token is sent (and billed) every match"
