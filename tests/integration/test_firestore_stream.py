"""The Firestore adapter's streamed reads against the emulator: documents decoded from the raw
RunQuery protobuf must equal what the client's own snapshots give, and a page cut short by a
real deadline must resume after its last document, losing and repeating nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import google.auth
import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

import reel_reconciler.stores.paging as paging
from devkit.seed import World
from reel_reconciler.engine import Engine
from reel_reconciler.stores.connection import Connection, connect
from reel_reconciler.stores.firestore import FirestoreStore

Make = Callable[..., Engine]

EVERY_TYPE: dict[str, Any] = {
    "userId": "u1",
    "null": None,
    "yes": True,
    "int": -(2**62),
    "double": 1.5,
    "string": "clip ✓",
    "bytes": b"\x00\xff",
    "stamp": datetime(2026, 11, 24, 6, 30, 1, 123456, tzinfo=UTC),
    "geo": firestore.GeoPoint(48.85, 2.35),
    "array": [1, "two", None, {"nested": [3.0]}],
    "map": {"a": {"b": {"c": "deep"}}, "empty": {}},
    "emptyArray": [],
}


def test_streamed_documents_equal_the_clients_snapshots(world: World, make_engine: Make) -> None:
    store = make_engine().firestore
    world.projects().document("every-type").set(
        {**EVERY_TYPE, "ref": world.projects().document("other")})
    world.projects().document("server-time").set(
        {"userId": "u2", "at": firestore.SERVER_TIMESTAMP})
    world.projects().document("no-user").set({"status": "draft"})

    streamed = {doc.id: doc for batch in store.projects_by_user(page_size=10)
                for doc in batch}
    assert sorted(streamed) == ["every-type", "server-time"]
    for doc_id, doc in streamed.items():
        snapshot = world.projects().document(doc_id).get()
        expected = snapshot.to_dict()
        data = dict(doc.data or {})
        if "ref" in expected:  # references compare equal only within one client
            assert data.pop("ref").path == expected.pop("ref").path == "reel_maker_projects/other"
        assert data == expected
        assert doc.update_time == snapshot.update_time
        assert _nanoseconds(doc.update_time) == snapshot.update_time.nanosecond  # precondition
    assert list(store.projects_without_user(page_size=10)) == ["no-user"]


def _nanoseconds(stamp: datetime) -> int:
    if isinstance(stamp, DatetimeWithNanoseconds):
        return stamp.nanosecond
    return stamp.microsecond * 1000


def test_selected_fields_only(world: World, make_engine: Make) -> None:
    store = make_engine().firestore
    world.projects().document("p").set(EVERY_TYPE)
    (doc,) = [d for batch in store.projects_by_user(10, fields=["userId", "map"]) for d in batch]
    assert doc.data == {"userId": "u1", "map": EVERY_TYPE["map"]}


def test_a_page_cut_by_its_deadline_resumes_after_its_last_document(
        world: World, make_engine: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real deadline, not a fault injected: the consumer is slower than `stream_timeout`,
    so each page is cut mid-way and resumed (uncounted) until it is complete."""
    store: FirestoreStore = make_engine().firestore
    expected = []
    with world.db.batch() as batch:
        for i in range(60):
            user = f"user{i % 7}"
            batch.set(world.projects().document(f"p{i:03d}"), {"userId": user, "n": i})
            expected.append((user, f"p{i:03d}"))
    expected.sort()
    store.stream_timeout = 0.3
    monkeypatch.setattr(paging, "STREAM_BATCH", 5)
    calls: list[int] = []
    api = store.connection.api
    run_query = api.run_query

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)  # observed only: the call goes to the emulator unchanged
        return run_query(*args, **kwargs)

    monkeypatch.setattr(api, "run_query", counted)

    seen: list[tuple[str, str]] = []
    before = store.requests.total()
    for batch in store.projects_by_user(page_size=25):
        seen.extend(((doc.data or {})["userId"], doc.id) for doc in batch)
        time.sleep(0.2)
    assert seen == expected
    assert store.requests.total() - before == 3  # pages of 25, 25, 10: resumes are not counted
    assert len(calls) > 3, "no page was cut by its deadline: the resume went untested"


def _single_threaded(connection: Connection) -> bool:
    """gRPC keeps the option's effect private: the channel's flag is all there is to see."""
    return bool(connection.channel._single_threaded_unary_stream)  # noqa: SLF001


def test_streamed_answers_are_read_on_the_calling_thread(world: World,
                                                         make_engine: Make) -> None:
    """gRPC's SingleThreadedUnaryStream on the store's channel: no hand-off from a polling
    thread per streamed document (bench/RESULTS.md), and the reads still work on it."""
    store = make_engine().firestore
    world.projects().document("p").set({"userId": "u", "status": "draft"})
    assert _single_threaded(store.connection)
    assert [doc.id for batch in store.projects_by_user(10) for doc in batch] == ["p"]
    assert list(store.get_projects(["p", "gone"])) == ["p"]


def test_the_production_channel_reads_streams_on_the_calling_thread_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the emulator the channel is a secure one with the client's credentials. No
    Google account is reachable here, so credential discovery is replaced by anonymous
    credentials (creating the channel makes no request); the channel is what is checked."""
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(google.auth, "default",
                        lambda *_, **__: (AnonymousCredentials(), "found-project"))  # type: ignore[no-untyped-call]
    connection = connect(None, "(default)")
    try:
        assert _single_threaded(connection)
        assert not connection.emulator
        assert connection.target == "firestore.googleapis.com:443"
        assert connection.database == "projects/found-project/databases/(default)"
        assert ("authorization", "Bearer owner") not in connection.metadata
    finally:
        connection.close()


def test_active_jobs_are_exactly_the_queued_and_processing_ones(world: World,
                                                               make_engine: Make) -> None:
    """The store asks for a range of statuses; what sorts inside it but is no active status
    (a typo, a prefix, a longer word) must not come back, nor a non-string status."""
    statuses: dict[str, Any] = {
        "j-queued": "queued", "j-processing": "processing", "j-pending": "pending",
        "j-processing2": "processing-retry", "j-q": "q", "j-queuedx": "queuedx",
        "j-completed": "completed", "j-failed": "failed", "j-int": 1, "j-none": None,
    }
    for job_id, status in statuses.items():
        world.jobs().document(job_id).set({"projectId": "p", "userId": "u", "status": status})
    assert sorted(doc.id for doc in make_engine().firestore.active_jobs()) == [
        "j-processing", "j-queued"]
