"""GCS notifications for real: fake-gcs-server publishes every object change to the Pub/Sub
emulator, and `watch` pulls the subscription with its sweep an hour away, so only a
notification can bring a change in storage to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.notifications import Notifications
from devkit.seed import World
from tests.support.harness import metric, wait_for
from tests.support.watching import Watch, start_watch


@pytest.fixture
def watching(notified: tuple[World, Notifications], tmp_path: Path) -> Iterator[Watch]:
    world, notes = notified
    running = start_watch(None, world, tmp_path / "watch.log", "--settle", "0s",
                          "--sweep-interval", "1h", "--stale-interval", "1h",
                          "--notifications-subscription", notes.path)
    try:
        running.wait_ready()
        yield running
    finally:
        running.kill()


def notifications(watch: Watch, **labels: str) -> float:
    return metric(watch.get("/metrics").text, "reel_reconciler_notifications_total", **labels)


def reconciles(watch: Watch, **labels: str) -> float:
    return metric(watch.get("/metrics").text, "reel_reconciler_reconcile_total", **labels)


def test_a_clip_deleted_behind_a_ready_project_heals_without_a_sweep(
        notified: tuple[World, Notifications], watching: Watch) -> None:
    world, _ = notified
    _, paths = world.generated_project("p-ready", status="ready", prompts=2, in_gcs=2,
                                       in_db=2)
    wait_for(lambda: notifications(watching, event_type="OBJECT_FINALIZE",
                                   outcome="queued") >= 2, 15,
             lambda: f"the uploads' notifications\n{watching.logs()}")
    world.gcs.bucket(world.bucket).blob(paths[1]).delete()
    wait_for(lambda: world.project("p-ready")["clipFilenames"][1] is None, 15,
             lambda: f"the deleted clip to leave the project\n{watching.logs()}")
    project = world.project("p-ready")
    assert project["status"] != "ready"
    assert project["lastReconciliation"]["healSeconds"] < 15, "counted from the delete"
    assert notifications(watching, event_type="OBJECT_DELETE", outcome="queued") >= 1
    assert reconciles(watching, trigger="listener", action="corrected") >= 1
    assert reconciles(watching, trigger="sweep", action="no_change") == 0, "no sweep ran"
    text = watching.get("/metrics").text
    assert metric(text, "reel_reconciler_time_to_heal_seconds_count", kind="missing_clip") >= 1
    assert "p-ready" not in text, "ids must never be metric labels"


def test_an_overwrite_and_objects_of_no_project_change_nothing(
        notified: tuple[World, Notifications], watching: Watch) -> None:
    world, _ = notified
    _, paths = world.generated_project("p-kept", status="ready", prompts=2, in_gcs=2, in_db=2)
    wait_for(lambda: notifications(watching, event_type="OBJECT_FINALIZE",
                                   outcome="queued") >= 2, 15, "the uploads' notifications")
    wait_for(lambda: reconciles(watching, trigger="listener", action="no_change") >= 1, 15,
             "the uploads' reconcile")
    before = world.update_time("p-kept")
    calm = reconciles(watching, trigger="listener", action="no_change")
    world.put_object(paths[0])  # the same name again: a new generation replaces the old
    world.put_object("other-app/u1/x.bin")
    world.put_object(f"{world.root_prefix}/loose-file.txt")
    wait_for(lambda: notifications(watching, event_type="OBJECT_FINALIZE",
                                   outcome="outside_projects") >= 2, 15,
             lambda: f"the foreign objects' notifications\n{watching.logs()}")
    wait_for(lambda: reconciles(watching, trigger="listener", action="no_change") > calm, 15,
             lambda: f"the overwrite's reconcile\n{watching.logs()}")
    wait_for(lambda: notifications(watching, event_type="OBJECT_DELETE", outcome="overwrite")
             >= 1, 15, "the overwrite's delete, counted as such")
    assert world.update_time("p-kept") == before, "an overwrite is no deletion"
    assert reconciles(watching, trigger="listener", action="corrected") == 0


def test_a_deleted_subscription_shows_and_recovers_when_recreated(
        notified: tuple[World, Notifications], watching: Watch) -> None:
    world, notes = notified
    notes.delete_subscription()
    wait_for(lambda: not watching.ready(), 30,
             lambda: f"/readyz to report the missing subscription\n{watching.logs()}")
    text = watching.get("/metrics").text
    assert metric(text, "reel_reconciler_listener_up", listener="notifications") == 0
    assert metric(text, "reel_reconciler_listener_up", listener="projects") == 1
    assert "subscription_missing" in watching.logs()
    notes.create_subscription()
    watching.wait_ready()
    _, paths = world.generated_project("p-late", status="ready", prompts=1, in_gcs=1, in_db=1)
    world.gcs.bucket(world.bucket).blob(paths[0]).delete()
    wait_for(lambda: world.project("p-late")["clipFilenames"][0] is None, 30,
             lambda: f"a heal through the recreated subscription\n{watching.logs()}")
