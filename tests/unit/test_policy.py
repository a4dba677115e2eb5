"""Table-driven tests of the pure policy (DESIGN.md §3). Every case also checks idempotency:
the plan is applied to the document and the policy run again must want no write (D5)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.model import (
    Action,
    DriftKind,
    InvalidDocument,
    InvalidJob,
    Job,
    Location,
    ObjectInfo,
    Observation,
    Plan,
    PolicySettings,
    Project,
    ProjectStatus,
)
from controller.policy import decide, is_active, is_stale, latest_job_for, target_status

LOC = Location(bucket="reels", root_prefix="reel-maker")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SETTINGS = PolicySettings(location=LOC, stale_after=timedelta(minutes=30),
                          settle=timedelta(seconds=30))
JOB = "reeljob-aaaaaaaaaaaa"
OLD_JOB = "reeljob-bbbbbbbbbbbb"
PREFIX = "reel-maker/u1/p1/"


def clip(i: int, job: str = JOB, file: str = "clip.mp4") -> str:
    return f"{PREFIX}raw/{job}/prompt-{i:02d}/{file}"


def obj(name: str, size: int = 1000, age: timedelta = timedelta(hours=1)) -> ObjectInfo:
    return ObjectInfo(name=name, size=size, updated=NOW - age)


def doc(status: str = "ready", n: int = 3, claims: list[Any] | None = None,
        **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "userId": "u1", "title": "t", "status": status,
        "promptList": [f"prompt {i}" for i in range(n)],
        "clipFilenames": claims if claims is not None else [],
        "durationSeconds": 8,
    }
    data.update(extra)
    return data


def job(status: str = "completed", prompt_count: int = 3, job_id: str = JOB,
        created: timedelta = timedelta(hours=2), updated: timedelta | None = None,
        started: timedelta | None = None) -> Job:
    data: dict[str, Any] = {"projectId": "p1", "status": status, "promptCount": prompt_count,
                            "createdAt": NOW - created}
    if updated is not None:
        data["updatedAt"] = NOW - updated
    if started is not None:
        data["startedAt"] = NOW - started
    return Job.parse(job_id, data, NOW - created)


def observe(data: Mapping[str, Any], jobs: tuple[Job, ...] = (),
            objects: tuple[ObjectInfo, ...] = (), outside: Mapping[str, ObjectInfo | None] | None
            = None, forced: bool = False, written: timedelta = timedelta(hours=1),
            invalid_jobs: tuple[InvalidJob, ...] = ()) -> Observation:
    project = Project.parse("p1", data, NOW - written, LOC)
    return Observation(project=project, jobs=jobs, objects=objects, outside=outside or {},
                       now=NOW, forced=forced, invalid_jobs=invalid_jobs)


def apply(data: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
    """What Firestore holds after the plan's update (top-level field replacement)."""
    merged = dict(data)
    merged.update(plan.update or {})
    return merged


def run_twice(data: dict[str, Any], **kw: Any) -> tuple[Plan, dict[str, Any]]:
    """Decide, apply, decide again: the second plan must be empty (idempotency, D5)."""
    first = decide(observe(data, **kw), SETTINGS)
    after = apply(data, first)
    second = decide(observe(after, **kw), SETTINGS)
    assert second.update is None, f"second pass wants to write {second.update}"
    assert second.report.action in (Action.NO_CHANGE, Action.SKIPPED)
    return first, after


# --- the status rule, every row -----------------------------------------------------------

STATUS_ROWS = [
    # current, n, usable, expected
    *[(s, 0, 0, "draft") for s in ("draft", "generating", "ready", "error")],
    *[(s, 3, 3, "ready") for s in ("draft", "generating", "ready", "error")],
    *[(s, 3, 1, "draft") for s in ("draft", "generating", "ready", "error")],
    *[(s, 3, 2, "draft") for s in ("draft", "generating", "ready", "error")],
    ("generating", 3, 0, "error"),
    ("error", 3, 0, "error"),
    ("draft", 3, 0, "draft"),
    ("ready", 3, 0, "draft"),
]


@pytest.mark.parametrize(("current", "n", "usable", "expected"), STATUS_ROWS)
def test_status_rule(current: ProjectStatus, n: int, usable: int,
                     expected: ProjectStatus) -> None:
    assert target_status(current, n, usable) == expected
    # A fixed point: the rule applied to its own output gives the same status (D5).
    assert target_status(expected, n, usable) == expected


# --- end-to-end cases through decide() ----------------------------------------------------

def test_scenario1_d1_restores_all_clips_from_gcs() -> None:
    """Seed scenario 1 / D1: 0 clips in DB, 15 in GCS, crashed job → ready with 15 restored."""
    objects = tuple(obj(clip(i)) for i in range(15))
    stale = (job("processing", 15, updated=timedelta(hours=2)),)
    plan, after = run_twice(doc("generating", 15, []), jobs=stale, objects=objects)
    assert plan.report.action is Action.CORRECTED
    assert after["status"] == "ready"
    assert after["clipFilenames"] == [clip(i) for i in range(15)]
    assert plan.report.restored_clips == [clip(i) for i in range(15)]
    assert plan.report.verified_clips == 0
    assert plan.report.recovered_video_seconds == 15 * 8
    assert DriftKind.STUCK_GENERATING in plan.report.drift_kinds
    assert DriftKind.STALE_JOB in plan.report.drift_kinds
    assert plan.report.stale_jobs == [JOB]


def test_scenario2_partial_with_running_job_is_left_to_the_worker() -> None:
    objects = tuple(obj(clip(i)) for i in range(7))
    running = (job("processing", 15, updated=timedelta(minutes=2)),)
    plan = decide(observe(doc("generating", 15, [clip(i) for i in range(7)]),
                          jobs=running, objects=objects), SETTINGS)
    assert plan.update is None
    assert plan.report.action is Action.SKIPPED
    assert JOB in (plan.report.reason or "")


def test_scenario2_partial_after_crash_keeps_work_and_becomes_draft() -> None:
    claims = [clip(i) for i in range(7)]
    objects = tuple(obj(clip(i)) for i in range(7))
    dead = (job("failed", 15),)
    plan, after = run_twice(doc("generating", 15, claims), jobs=dead, objects=objects)
    assert after["status"] == "draft"
    assert after["clipFilenames"] == claims + [None] * 8
    assert plan.report.verified_clips == 7


def test_scenario3_crashed_job_started_long_ago() -> None:
    """Job processing with only startedAt 2h ago: not active, its 3 clips kept, draft."""
    claims = [clip(i) for i in range(3)]
    crashed = (job("processing", 15, started=timedelta(hours=2)),)
    plan, after = run_twice(doc("generating", 15, claims), jobs=crashed,
                            objects=tuple(obj(c) for c in claims))
    assert after["status"] == "draft"
    assert after["clipFilenames"][:3] == claims
    assert plan.report.stale_jobs == [JOB]


def test_scenario4_false_claims() -> None:
    claims = [clip(i) for i in range(15)]
    deleted = {3, 7, 11}
    objects = tuple(obj(c) for i, c in enumerate(claims) if i not in deleted)
    plan, after = run_twice(doc("ready", 15, claims), jobs=(job("failed", 14),), objects=objects)
    assert after["status"] == "draft"
    assert [i for i, c in enumerate(after["clipFilenames"]) if c is None] == sorted(deleted)
    assert plan.report.missing_clips == [claims[i] for i in sorted(deleted)]
    assert plan.report.verified_clips == 12
    assert plan.report.claimed_clips == 15
    assert DriftKind.MISSING_CLIP in plan.report.drift_kinds
    assert DriftKind.STATUS_MISMATCH in plan.report.drift_kinds


def test_d3_new_generation_with_no_clips_yet_is_not_killed() -> None:
    queued = (job("queued", 3, created=timedelta(minutes=1)),)
    plan = decide(observe(doc("generating", 3, [None] * 3), jobs=queued), SETTINGS)
    assert plan.update is None and plan.report.action is Action.SKIPPED


def test_d5_failed_generation_keeps_its_error() -> None:
    _plan, after = run_twice(doc("generating", 3, [None] * 3), jobs=(job("failed", 3),))
    assert after["status"] == "error"
    assert "0 of 3" in after["errorInfo"]["message"]
    # A third look at the error, with its original errorInfo, still writes nothing.
    third = decide(observe(doc("error", 3, [None] * 3, errorInfo={"message": "quota"})),
                   SETTINGS)
    assert third.update is None and third.report.corrected_status == "error"


def test_leaving_error_clears_error_info_but_keeps_it_in_last_reconciliation() -> None:
    claims = [clip(0), None, None]
    _plan, after = run_twice(doc("error", 3, claims, errorInfo={"message": "quota"}),
                            objects=(obj(clip(0)),))
    assert after["status"] == "draft"
    assert after["errorInfo"] is None
    assert after["lastReconciliation"]["previousErrorInfo"] == {"message": "quota"}
    assert after["lastReconciliation"]["originalStatus"] == "error"


def test_no_change_writes_nothing() -> None:
    claims = [clip(i) for i in range(3)]
    plan = decide(observe(doc("ready", 3, claims), objects=tuple(obj(c) for c in claims)),
                  SETTINGS)
    assert plan.update is None
    assert plan.report.action is Action.NO_CHANGE
    assert plan.report.verified_clips == 3 and plan.report.drift_kinds == []


@pytest.mark.parametrize("status", ["draft", "generating", "ready", "error"])
def test_no_prompts_is_draft(status: str) -> None:
    _plan, after = run_twice(doc(status, 0, []))
    assert after["status"] == "draft"


def test_gs_uri_of_configured_bucket_is_verified_and_kept_as_stored() -> None:
    claims = [f"gs://reels/{clip(i)}" for i in range(3)]
    plan = decide(observe(doc("generating", 3, claims), objects=tuple(
        obj(clip(i)) for i in range(3))), SETTINGS)
    assert plan.update is not None
    assert "clipFilenames" not in plan.update
    assert plan.update["status"] == "ready"


def test_extra_claims_beyond_prompts_are_reported_not_kept() -> None:
    claims = [clip(i) for i in range(4)]
    plan, after = run_twice(doc("ready", 3, claims), objects=tuple(obj(c) for c in claims))
    assert after["clipFilenames"] == claims[:3]
    assert plan.report.extra_claims == [claims[3]]


def test_short_claim_list_is_padded_to_n_slots() -> None:
    _plan, after = run_twice(doc("draft", 3, [clip(0)]), objects=(obj(clip(0)),))
    assert after["clipFilenames"] == [clip(0), None, None]


def test_empty_string_claim_is_an_empty_slot() -> None:
    plan, after = run_twice(doc("draft", 2, [clip(0), ""]), objects=(obj(clip(0)),))
    assert after["clipFilenames"] == [clip(0), None]
    assert plan.report.missing_clips == []


def test_claim_outside_prefix_uses_its_metadata_read() -> None:
    elsewhere = "reel-maker/u1/other-project/raw/x/prompt-00/clip.mp4"
    data = doc("ready", 2, [elsewhere, clip(1)])
    present = decide(observe(data, objects=(obj(clip(1)),),
                             outside={elsewhere: obj(elsewhere)}), SETTINGS)
    assert present.update is None and present.report.verified_clips == 2
    absent = decide(observe(data, objects=(obj(clip(1)),), outside={elsewhere: None}), SETTINGS)
    assert absent.report.missing_clips == [elsewhere]
    with pytest.raises(ValueError, match="no metadata read"):
        decide(observe(data, objects=(obj(clip(1)),)), SETTINGS)


def test_missing_claim_is_restored_from_latest_job_and_reported_missing() -> None:
    stale_claim = clip(1, job=OLD_JOB)
    restored = clip(1)
    plan, after = run_twice(doc("ready", 2, [clip(0), stale_claim]), jobs=(job("completed", 2),),
                            objects=(obj(clip(0)), obj(restored)))
    assert after["clipFilenames"] == [clip(0), restored]
    assert after["status"] == "ready"
    assert plan.report.missing_clips == [stale_claim]
    assert plan.report.restored_clips == [restored]


def test_verified_claim_is_never_replaced() -> None:
    claims = [clip(0, job=OLD_JOB)]
    objects = (obj(claims[0]), obj(clip(0), age=timedelta(seconds=60)))
    plan = decide(observe(doc("ready", 1, claims), jobs=(job("completed", 1),),
                          objects=objects), SETTINGS)
    assert plan.update is None


def test_restore_picks_newest_mp4_of_latest_matching_job_only() -> None:
    jobs = (
        job("completed", 3, job_id=OLD_JOB, created=timedelta(hours=5)),
        job("completed", 3, created=timedelta(hours=2)),
        job("completed", 4, job_id="reeljob-cccccccccccc", created=timedelta(minutes=50)),
    )
    objects = (
        obj(clip(0, file="a.mp4"), age=timedelta(minutes=90)),
        obj(clip(0, file="b.mp4"), age=timedelta(minutes=80)),       # newest: wins
        obj(clip(1, file="thumb.jpg")),                              # not a clip
        obj(clip(2, file="empty.mp4"), size=0),                      # failed upload
        obj(clip(2, job=OLD_JOB)),                                   # older job: not a source
        obj(f"{PREFIX}raw/{JOB}/prompt-1/odd.mp4"),                  # not zero-padded
        obj(clip(1, job="reeljob-cccccccccccc")),                    # other prompt count
    )
    _plan, after = run_twice(doc("generating", 3, []), jobs=jobs, objects=objects)
    assert after["clipFilenames"] == [clip(0, file="b.mp4"), None, None]
    assert after["status"] == "draft"


def test_no_matching_job_means_nothing_restored() -> None:
    _plan, after = run_twice(doc("generating", 2, []), jobs=(job("completed", 5),),
                            objects=(obj(clip(0)), obj(clip(1))))
    assert after["clipFilenames"] == [None, None]
    assert after["status"] == "error"


@pytest.mark.parametrize(
    ("stitched", "objects", "outside", "cleared"),
    [
        (f"{PREFIX}stitched/final.mp4", (f"{PREFIX}stitched/final.mp4",), {}, False),
        (f"{PREFIX}stitched/final.mp4", (), {}, True),
        (f"gs://reels/{PREFIX}stitched/final.mp4", (), {}, True),
        ("exports/final.mp4", (), {"exports/final.mp4": None}, True),
        ("exports/final.mp4", (), {"exports/final.mp4": obj("exports/final.mp4")}, False),
    ],
)
def test_stitched_file(stitched: str, objects: tuple[str, ...],
                       outside: dict[str, ObjectInfo | None], cleared: bool) -> None:
    claims = [clip(0)]
    listing = (obj(clip(0)), *(obj(name) for name in objects))
    plan, after = run_twice(doc("ready", 1, claims, stitchedFilename=stitched),
                            objects=listing, outside=outside)
    if cleared:
        assert after["stitchedFilename"] is None
        assert plan.report.stitched_missing == stitched
        assert DriftKind.STITCHED_MISSING in plan.report.drift_kinds
    else:
        assert plan.update is None


def test_settle_window_holds_automatic_triggers_but_not_forced_ones() -> None:
    data = doc("generating", 1, [])
    objects = (obj(clip(0)),)
    fresh = timedelta(seconds=10)
    held = decide(observe(data, objects=objects, jobs=(job("failed", 1),), written=fresh),
                  SETTINGS)
    assert held.update is None and "settling" in (held.report.reason or "")
    forced = decide(observe(data, objects=objects, jobs=(job("failed", 1),), written=fresh,
                            forced=True), SETTINGS)
    assert forced.update is not None and forced.update["status"] == "ready"


def test_malformed_job_that_may_be_running_holds_the_project() -> None:
    weird = InvalidJob(id="reeljob-dddddddddddd", raw_status="processing",
                       reason="promptCount: bad")
    plan = decide(observe(doc("generating", 1, []), invalid_jobs=(weird,)), SETTINGS)
    assert plan.update is None and "malformed" in (plan.report.reason or "")
    done = InvalidJob(id="reeljob-dddddddddddd", raw_status="completed", reason="x")
    plan = decide(observe(doc("generating", 1, []), invalid_jobs=(done,)), SETTINGS)
    assert plan.update is not None


def test_last_reconciliation_summary() -> None:
    plan = decide(observe(doc("generating", 2, []), jobs=(job("failed", 2),),
                          objects=(obj(clip(0)),)), SETTINGS)
    assert plan.update is not None
    summary = plan.update["lastReconciliation"]
    assert summary == {"at": NOW, "action": "corrected", "originalStatus": "generating",
                       "correctedStatus": "draft", "verifiedClips": 0, "restoredClips": 1,
                       "missingClips": 0}
    assert set(plan.update) <= {"clipFilenames", "status", "errorInfo", "stitchedFilename",
                                "lastReconciliation"}


def test_report_uses_seed_keys() -> None:
    plan = decide(observe(doc("ready", 1, [clip(0)]), objects=(obj(clip(0)),)), SETTINGS)
    body = plan.report.as_json()
    for key in ("projectId", "originalStatus", "correctedStatus", "claimedClips",
                "verifiedClips", "missingClips", "restoredClips", "action"):
        assert key in body
    assert body["action"] == "no_change"


# --- job liveness -------------------------------------------------------------------------

M = timedelta(minutes=1)
LIVENESS_ROWS = [
    # status, created, started, updated, active, stale
    ("queued", 1 * M, None, None, True, False),
    ("queued", 31 * M, None, None, False, True),
    ("processing", 90 * M, 80 * M, 5 * M, True, False),       # heartbeat counts
    ("processing", 90 * M, 80 * M, 31 * M, False, True),
    ("processing", 90 * M, 10 * M, None, True, False),        # startedAt fallback
    ("processing", 90 * M, 40 * M, None, False, True),
    ("processing", 30 * M, None, None, True, False),          # exactly at the timeout
    ("processing", -5 * M, None, None, True, False),          # clock skew: future is alive
    ("completed", 1 * M, 1 * M, 1 * M, False, False),
    ("failed", 99 * M, None, None, False, False),
]


@pytest.mark.parametrize(("status", "created", "started", "updated", "active", "stale"),
                         LIVENESS_ROWS)
def test_job_liveness(status: str, created: timedelta, started: timedelta | None,
                      updated: timedelta | None, active: bool, stale: bool) -> None:
    j = job(status, 3, created=created, started=started, updated=updated)
    assert is_active(j, NOW, SETTINGS.stale_after) is active
    assert is_stale(j, NOW, SETTINGS.stale_after) is stale


def test_job_without_any_timestamp_is_stale() -> None:
    j = Job.parse("reeljob-eeeeeeeeeeee", {"projectId": "p1", "status": "processing"},
                  NOW - timedelta(hours=3))
    assert is_stale(j, NOW, SETTINGS.stale_after)


def test_latest_job_for_prompt_count() -> None:
    jobs = [job("completed", 3, job_id=OLD_JOB, created=timedelta(hours=3)),
            job("failed", 3, created=timedelta(hours=1)),
            job("completed", 2, job_id="reeljob-cccccccccccc", created=timedelta(minutes=1))]
    latest = latest_job_for(jobs, 3)
    assert latest is not None and latest.id == JOB
    assert latest_job_for(jobs, 7) is None


# --- malformed documents ------------------------------------------------------------------

MALFORMED = [
    ("no fields", None, "no fields"),
    ("unknown status", doc("stuck"), "status"),
    ("status of wrong type", doc(status=3), "status"),
    ("promptList not a list", doc(promptList="abc"), "promptList"),
    ("prompt of wrong type", doc(promptList=["a", 5]), "promptList"),
    ("clip of wrong type", doc(claims=[clip(0), 7]), "clipFilenames"),
    ("missing userId", {k: v for k, v in doc().items() if k != "userId"}, "userId"),
    ("userId traversal", doc(userId=".."), "traversal"),
    ("userId with slash", doc(userId="a/b"), "userId"),
    ("absurd prompt count", doc(n=10_000), "promptList"),
    ("absurd claim count", doc(claims=[None] * 5000), "clipFilenames"),
    ("errorInfo not a map", doc(errorInfo="boom"), "errorInfo"),
    ("negative duration", doc(durationSeconds=-1), "durationSeconds"),
    ("path traversal", doc(claims=[f"{PREFIX}raw/../../u2/p9/x.mp4"]), "traversal"),
    ("absolute path", doc(claims=["/etc/passwd"]), "relative"),
    ("foreign bucket", doc(claims=[f"gs://other-bucket/{clip(0)}"]), "foreign bucket"),
    ("foreign bucket stitched", doc(stitchedFilename="gs://other/x.mp4"), "foreign bucket"),
    ("empty object name", doc(claims=["gs://reels/"]), "not a valid object name"),
    ("name too long", doc(claims=["a/" * 600 + "x.mp4"]), "not a valid object name"),
    ("double slash", doc(claims=["reel-maker//u1/x.mp4"]), "normal form"),
]


@pytest.mark.parametrize(("case", "data", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_project_is_refused_with_a_clear_reason(case: str, data: Any,
                                                          message: str) -> None:
    with pytest.raises(InvalidDocument, match=message):
        Project.parse("p1", data, NOW, LOC)


@pytest.mark.parametrize("data", [
    None,
    {"projectId": "p1", "status": "zombie"},
    {"projectId": "p1", "status": "processing", "promptCount": "many"},
    {"projectId": "p1", "status": "queued", "createdAt": "yesterday"},
    {"status": "queued"},
])
def test_malformed_job_is_refused(data: Any) -> None:
    with pytest.raises(InvalidDocument):
        Job.parse("reeljob-ffffffffffff", data, NOW)
