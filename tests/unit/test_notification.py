"""Which project a GCS notification is about, or why it is none's (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reel_reconciler.engine.notification import DELETE, FINALIZE, Outcome, route
from reel_reconciler.model import Location

LOC = Location(bucket="reels", root_prefix="reel-maker")
CLIP = "reel-maker/u1/p1/raw/job-1/prompt-00/clip.mp4"


def message(event: str = FINALIZE, name: str = CLIP, bucket: str = "reels",
            **extra: str) -> dict[str, str]:
    return {"eventType": event, "bucketId": bucket, "objectId": name,
            "eventTime": "2026-11-30T12:00:01.250Z", "payloadFormat": "JSON_API_V1", **extra}


def test_a_new_clip_queues_its_project_with_the_event_time() -> None:
    routed = route(message(), LOC)
    assert (routed.outcome, routed.project_id) == (Outcome.QUEUED, "p1")
    assert routed.changed_at == datetime(2026, 11, 30, 12, 0, 1, 250000, tzinfo=UTC)
    assert route(message(DELETE), LOC).project_id == "p1"


def test_an_overwrite_is_one_change_carried_by_its_finalize() -> None:
    assert route(message(DELETE, overwrittenByGeneration="17"), LOC).outcome is \
        Outcome.OVERWRITE
    assert route(message(FINALIZE, overwroteGeneration="16"), LOC).outcome is Outcome.QUEUED


@pytest.mark.parametrize(("attributes", "outcome"), [
    (message("OBJECT_METADATA_UPDATE"), Outcome.OTHER_EVENT),
    (message("OBJECT_ARCHIVE"), Outcome.OTHER_EVENT),
    (message(bucket="someone-elses"), Outcome.OTHER_BUCKET),
    (message(name="other-app/u1/p1/clip.mp4"), Outcome.OUTSIDE_PROJECTS),
    (message(name="reel-maker-old/u1/p1/clip.mp4"), Outcome.OUTSIDE_PROJECTS),
    (message(name="reel-maker/u1/p1"), Outcome.OUTSIDE_PROJECTS),
    (message(name="reel-maker/u1/p1/"), Outcome.OUTSIDE_PROJECTS),
    (message(name="reel-maker/../p1/clip.mp4"), Outcome.OUTSIDE_PROJECTS),
    (message(name="reel-maker/u1/../clip.mp4"), Outcome.OUTSIDE_PROJECTS),
    ({"eventType": FINALIZE, "bucketId": "reels"}, Outcome.MALFORMED),
    ({}, Outcome.MALFORMED),
])
def test_messages_about_no_project_are_acked_and_counted_only(
        attributes: dict[str, str], outcome: Outcome) -> None:
    routed = route(attributes, LOC)
    assert (routed.outcome, routed.project_id) == (outcome, None)


def test_an_unparsable_event_time_still_queues() -> None:
    routed = route(message(eventTime="yesterday"), LOC)
    assert routed.outcome is Outcome.QUEUED
    assert routed.changed_at is None


def test_event_type_labels_stay_a_bounded_set() -> None:
    assert route(message("SOMETHING_NEW"), LOC).event_type == "unknown"
