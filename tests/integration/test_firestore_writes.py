"""The Firestore adapter's writes against the emulator: what it encodes reads back, through
the client library, as the value written; every write holds only on the version it read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from devkit.seed import World
from reel_reconciler.engine import Engine
from reel_reconciler.stores import Conflict
from reel_reconciler.stores.values import Reference
from tests.integration.test_firestore_stream import EVERY_TYPE

Make = Callable[..., Engine]


def test_written_values_read_back_as_written(world: World, make_engine: Make) -> None:
    store = make_engine().firestore
    world.projects().document("p").set({"userId": "u", "title": "kept"})
    read = store.get_projects(["p"]).get("p")
    assert read is not None
    other = world.projects().document("other")
    reference = Reference(f"{store.connection.documents}/{store.projects}/other")
    fields = {**EVERY_TYPE, "ref": reference, "odd name": {"a.b": 1}}
    written = store.update_project("p", fields, read.update_time)

    snapshot = world.projects().document("p").get()
    data = snapshot.to_dict()
    assert snapshot.update_time == written
    assert data.pop("ref").path == other.path
    # the server's time of this very write (the emulator's is in ms and a little earlier)
    assert abs(data.pop("updatedAt") - written) < timedelta(seconds=1)
    assert data == {**EVERY_TYPE, "odd name": {"a.b": 1}, "title": "kept"}


def test_a_write_on_a_version_not_read_is_a_conflict_and_writes_nothing(
        world: World, make_engine: Make) -> None:
    store = make_engine().firestore
    world.projects().document("p").set({"userId": "u", "status": "generating"})
    read = store.get_projects(["p"]).get("p")
    assert read is not None
    world.projects().document("p").update({"title": "renamed by the app"})
    with pytest.raises(Conflict):
        store.update_project("p", {"status": "ready"}, read.update_time)
    with pytest.raises(Conflict):
        store.update_projects({"p": ({"status": "ready"}, read.update_time)})
    assert world.project("p")["status"] == "generating"
    with pytest.raises(Conflict):  # gone since: no write recreates it
        store.update_project("missing", {"status": "ready"}, read.update_time)
    assert not world.projects().document("missing").get().exists


def test_a_commit_of_many_returns_each_documents_new_update_time(
        world: World, make_engine: Make) -> None:
    """What the change log gives as each write's `updateTime`: the version it made."""
    store = make_engine().firestore
    for project_id in ("a", "b"):
        world.projects().document(project_id).set({"userId": "u", "status": "generating"})
    read = store.get_projects(["a", "b"])
    written = store.update_projects({pid: ({"status": "ready"}, doc.update_time)
                                     for pid, doc in read.items()})
    assert set(written) == {"a", "b"}
    for project_id, update_time in written.items():
        assert world.update_time(project_id) == update_time
        assert update_time > read[project_id].update_time


def test_a_failed_job_gets_one_server_time_for_both_stamps(world: World,
                                                           make_engine: Make) -> None:
    store = make_engine().firestore
    world.jobs().document("j").set({"projectId": "p", "status": "processing"})
    read = store.get_job("j")
    assert read is not None
    written = store.fail_job("j", "timed out", read.update_time)
    assert world.jobs().document("j").get().update_time == written
    job = world.jobs().document("j").get().to_dict()
    assert job["status"] == "failed"
    assert job["error"] == "timed out"
    assert job["timedOutAt"] == job["updatedAt"]
    assert abs(job["updatedAt"] - datetime.now(UTC)) < timedelta(minutes=1)
    with pytest.raises(Conflict):
        store.fail_job("j", "again", read.update_time)


def test_heartbeats_are_guarded_by_our_last_write(world: World, make_engine: Make) -> None:
    store = make_engine().firestore
    first = store.beat("beats", "r", 1, None)
    second = store.beat("beats", "r", 2, first)
    assert first is not None
    assert second is not None
    assert second > first
    assert (world.db.collection("beats").document("r").get().to_dict() or {})["beat"] == 2
    world.db.collection("beats").document("r").update({"beat": 99})  # another writer
    now = world.db.collection("beats").document("r").get().update_time
    assert store.beat("beats", "r", 3, second) == now  # not written: guard on theirs
    assert store.beat("beats", "r", 1, None) == now  # a create over it is refused too
    world.db.collection("beats").document("r").delete()
    assert store.beat("beats", "r", 4, now) is None
    assert store.beat("beats", "r", 5, None) is not None
    assert (world.db.collection("beats").document("r").get().to_dict() or {})["beat"] == 5
