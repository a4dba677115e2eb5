"""Table-driven tests of the pure policy (docs/design.md). Every case also checks idempotency:
the plan is applied to the document and the policy run again must want no write (D5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reel_reconciler.model import (
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
from reel_reconciler.policy import (
    decide,
    fingerprint,
    is_active,
    is_stale,
    restore_sources,
    target_status,
)

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

STATUS_TABLE: dict[str, tuple[str, str, str, str]] = {
    # status now: (n = 0, v = n, 0 < v < n, v = 0), as docs/design.md's table has it
    "draft": ("draft", "ready", "draft", "draft"),
    "generating": ("draft", "ready", "error", "error"),
    "stitching": ("draft", "ready", "draft", "draft"),
    "ready": ("draft", "ready", "draft", "draft"),
    "error": ("draft", "ready", "error", "error"),
}
COLUMNS = (("n=0", 0, 0), ("v=n", 3, 3), ("0<v<n", 3, 2), ("v=0", 3, 0))
CELLS = [pytest.param(current, n, usable, row[i], id=f"{current}-{label}")
         for current, row in STATUS_TABLE.items()
         for i, (label, n, usable) in enumerate(COLUMNS)]


@pytest.mark.parametrize(("current", "n", "usable", "expected"), CELLS)
def test_status_rule(current: ProjectStatus, n: int, usable: int,
                     expected: ProjectStatus) -> None:
    assert target_status(current, n, usable) == expected
    # A fixed point: the rule applied to its own output gives the same status (D5).
    assert target_status(expected, n, usable) == expected


@pytest.mark.parametrize(("current", "n", "usable", "expected"), CELLS)
def test_status_table_through_decide(current: str, n: int, usable: int,
                                     expected: str) -> None:
    """Every cell of the table on a whole project nobody owns (the generation's job failed,
    the stitch is older than its timeout), decided twice: the second pass writes nothing."""
    claims = [clip(i) for i in range(usable)] + [None] * (n - usable)
    user_error = {"message": "Quota exceeded"}
    data = doc(current, n, claims, errorInfo=user_error if current == "error" else None)
    plan, after = run_twice(data, jobs=(job("failed", n),),
                            objects=tuple(obj(clip(i)) for i in range(usable)))
    assert after["status"] == expected
    assert after["clipFilenames"] == claims
    if expected == "error" and current == "error":
        assert after["errorInfo"] == user_error, "the user's message must stay"
    elif expected == "error":
        message = after["errorInfo"]["message"]
        assert (f"after {usable} of {n} clips" if usable else "no clip made") in message
    elif current == "error":
        assert after["errorInfo"] is None
        assert after["lastReconciliation"]["previousErrorInfo"] == user_error
    if expected == current:
        assert plan.update is None or "status" not in plan.update
    else:
        kinds = {"generating": DriftKind.STUCK_GENERATING,
                 "stitching": DriftKind.STUCK_STITCHING}
        assert kinds.get(current, DriftKind.STATUS_MISMATCH) in plan.report.drift_kinds


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


def test_scenario2_partial_after_crash_keeps_work_and_becomes_error() -> None:
    claims = [clip(i) for i in range(7)]
    objects = tuple(obj(clip(i)) for i in range(7))
    dead = (job("failed", 15),)
    plan, after = run_twice(doc("generating", 15, claims), jobs=dead, objects=objects)
    assert after["status"] == "error"
    assert "after 7 of 15 clips" in after["errorInfo"]["message"]
    assert after["clipFilenames"] == claims
    assert plan.report.verified_clips == 7


def test_scenario3_crashed_job_started_long_ago() -> None:
    """Job processing with only startedAt 2h ago: not active, its 3 clips kept, error."""
    claims = [clip(i) for i in range(3)]
    crashed = (job("processing", 15, started=timedelta(hours=2)),)
    plan, after = run_twice(doc("generating", 15, claims), jobs=crashed,
                            objects=tuple(obj(c) for c in claims))
    assert after["status"] == "error"
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
    assert plan.update is None
    assert plan.report.action is Action.SKIPPED


def test_d5_failed_generation_keeps_its_error() -> None:
    _plan, after = run_twice(doc("generating", 3, [None] * 3), jobs=(job("failed", 3),))
    assert after["status"] == "error"
    assert "0 of 3" in after["errorInfo"]["message"]
    # A third look at the error, with its original errorInfo, still writes nothing.
    third = decide(observe(doc("error", 3, [None] * 3, errorInfo={"message": "quota"})),
                   SETTINGS)
    assert third.update is None
    assert third.report.corrected_status == "error"


def test_leaving_error_clears_error_info_but_keeps_it_in_last_reconciliation() -> None:
    claims = [clip(0), None, None]
    _plan, after = run_twice(doc("error", 3, claims, errorInfo={"message": "quota"}),
                            jobs=(job("failed", 3),),
                            objects=tuple(obj(clip(i)) for i in range(3)))
    assert after["status"] == "ready"
    assert after["clipFilenames"] == [clip(i) for i in range(3)]
    assert after["errorInfo"] is None
    assert after["lastReconciliation"]["previousErrorInfo"] == {"message": "quota"}
    assert after["lastReconciliation"]["originalStatus"] == "error"


def test_no_change_writes_nothing() -> None:
    claims = [clip(i) for i in range(3)]
    plan = decide(observe(doc("ready", 3, claims), objects=tuple(obj(c) for c in claims)),
                  SETTINGS)
    assert plan.update is None
    assert plan.report.action is Action.NO_CHANGE
    assert plan.report.verified_clips == 3
    assert plan.report.drift_kinds == []


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


def test_extra_claims_beyond_prompts_are_reported_not_counted() -> None:
    claims = [clip(i) for i in range(4)]
    plan, _after = run_twice(doc("ready", 3, claims), objects=tuple(obj(c) for c in claims))
    assert plan.update is None
    assert plan.report.verified_clips == 3
    assert plan.report.extra_claims == [claims[3]]


def test_a_write_leaves_exactly_n_slots() -> None:
    claims = [clip(0), clip(1), clip(2), clip(3)]
    _plan, after = run_twice(doc("ready", 3, claims), objects=(obj(clip(0)), obj(clip(1))))
    assert after["clipFilenames"] == [clip(0), clip(1), None]


@pytest.mark.parametrize("claims", [[], [clip(0)], [clip(0), "", None],
                                    [clip(0), None, None, None]])
def test_short_or_spelled_differently_lists_are_not_rewritten(claims: list[Any]) -> None:
    """[] and [None, None] say the same thing; rewriting one as the other is D6."""
    plan = decide(observe(doc("draft", 3, claims), objects=(obj(clip(0)),)), SETTINGS)
    assert plan.update is None
    assert plan.report.action is Action.NO_CHANGE


def test_claim_outside_prefix_uses_its_metadata_read() -> None:
    elsewhere = "reel-maker/u1/other-project/raw/x/prompt-00/clip.mp4"
    data = doc("ready", 2, [elsewhere, clip(1)])
    present = decide(observe(data, objects=(obj(clip(1)),),
                             outside={elsewhere: obj(elsewhere)}), SETTINGS)
    assert present.update is None
    assert present.report.verified_clips == 2
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


def test_restore_picks_newest_mp4_of_newest_matching_job_with_one() -> None:
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
        obj(clip(2, job=OLD_JOB)),                                   # older job: fills slot 2
        obj(clip(0, job=OLD_JOB)),                                   # newer job has slot 0
        obj(f"{PREFIX}raw/{JOB}/prompt-1/odd.mp4"),                  # not zero-padded
        obj(clip(1, job="reeljob-cccccccccccc")),                    # other prompt count
    )
    _plan, after = run_twice(doc("generating", 3, []), jobs=jobs, objects=objects)
    # Slot 2: the newest job has no clip for it, the older one does.
    assert after["clipFilenames"] == [clip(0, file="b.mp4"), None, clip(2, job=OLD_JOB)]
    assert after["status"] == "error"


def test_no_matching_job_means_nothing_restored() -> None:
    _plan, after = run_twice(doc("generating", 2, []), jobs=(job("completed", 5),),
                            objects=(obj(clip(0)), obj(clip(1))))
    assert after["clipFilenames"] == []
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
    data = doc("error", 1, [])
    objects = (obj(clip(0)),)
    fresh = timedelta(seconds=10)
    held = decide(observe(data, objects=objects, jobs=(job("failed", 1),), written=fresh),
                  SETTINGS)
    assert held.update is None
    assert "settling" in (held.report.reason or "")
    forced = decide(observe(data, objects=objects, jobs=(job("failed", 1),), written=fresh,
                            forced=True), SETTINGS)
    assert forced.update is not None
    assert forced.update["status"] == "ready"


def test_malformed_job_that_may_be_running_holds_the_project() -> None:
    weird = InvalidJob(id="reeljob-dddddddddddd", raw_status="processing",
                       reason="promptCount: bad")
    plan = decide(observe(doc("generating", 1, []), invalid_jobs=(weird,)), SETTINGS)
    assert plan.update is None
    assert "malformed" in (plan.report.reason or "")
    done = InvalidJob(id="reeljob-dddddddddddd", raw_status="completed", reason="x")
    plan = decide(observe(doc("generating", 1, []), invalid_jobs=(done,)), SETTINGS)
    assert plan.update is not None


def test_last_reconciliation_summary() -> None:
    plan = decide(observe(doc("ready", 2, []), jobs=(job("failed", 2),),
                          objects=(obj(clip(0)),)), SETTINGS)
    assert plan.update is not None
    summary = plan.update["lastReconciliation"]
    assert summary == {"at": NOW, "action": "corrected", "originalStatus": "ready",
                       "correctedStatus": "draft", "verifiedClips": 0, "restoredClips": 1,
                       "missingClips": 0, "basedOn": NOW - timedelta(hours=1),
                       "healSeconds": 3600.0, "fingerprint": fingerprint(plan.update),
                       "streak": [NOW]}
    assert set(plan.update) <= {"clipFilenames", "status", "errorInfo", "stitchedFilename",
                                "lastReconciliation"}


@pytest.mark.parametrize(("case", "data", "jobs", "changed", "wrong_for"), [
    # stuck generating: since its job last showed life, not since the document's write
    ("stuck generating, job silent 40 min", doc("generating", 2, []),
     (job("processing", 2, updated=timedelta(minutes=40)),), None, timedelta(minutes=40)),
    ("stuck generating, job failed 5 min ago", doc("generating", 2, []),
     (job("failed", 2, updated=timedelta(minutes=5)),), None, timedelta(minutes=5)),
    ("stuck generating, the newest job counts", doc("generating", 2, []),
     (job("failed", 2, job_id=OLD_JOB, created=timedelta(hours=5),
          updated=timedelta(hours=4)),
      job("failed", 2, updated=timedelta(minutes=7))), None, timedelta(minutes=7)),
    # a clip deleted behind a ready project: the notification's event time when one came
    ("ready, clip gone, notified", doc("ready", 2, [clip(0), clip(2)]), (),
     NOW - timedelta(seconds=3), timedelta(seconds=3)),
    # otherwise the document's last write
    ("ready, clip gone, found by a sweep", doc("ready", 2, [clip(0), clip(2)]), (), None,
     timedelta(hours=1)),
])
def test_heal_time_counts_from_when_the_project_went_wrong(
        case: str, data: dict[str, Any], jobs: tuple[Job, ...], changed: datetime | None,
        wrong_for: timedelta) -> None:
    observation = observe(data, jobs=jobs, objects=(obj(clip(0)), obj(clip(1))))  # no clip 2
    if changed is not None:
        observation = replace(observation, changed_at=changed)
    plan = decide(observation, SETTINGS)
    assert plan.update is not None, case
    seconds = wrong_for.total_seconds()
    assert plan.report.heal_seconds == seconds, case
    assert plan.update["lastReconciliation"]["healSeconds"] == seconds, case


def test_no_correction_has_no_heal_time() -> None:
    plan = decide(observe(doc("ready", 1, [clip(0)]), objects=(obj(clip(0)),)), SETTINGS)
    assert plan.update is None
    assert plan.report.heal_seconds is None


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


def test_restore_sources_are_jobs_of_the_prompt_count_newest_first() -> None:
    jobs = [job("completed", 3, job_id=OLD_JOB, created=timedelta(hours=3)),
            job("failed", 3, created=timedelta(hours=1)),
            job("completed", 2, job_id="reeljob-cccccccccccc", created=timedelta(minutes=1))]
    assert [j.id for j in restore_sources(jobs, 3)] == [JOB, OLD_JOB]
    assert restore_sources(jobs, 7) == []


# --- malformed documents ------------------------------------------------------------------

MALFORMED = [
    ("no fields", None, "no fields"),
    ("unknown status", doc("stuck"), "status"),
    ("status of wrong type", doc(status=3), "status"),
    ("promptList not a list", doc(promptList="abc"), "promptList"),
    ("prompt of wrong type", doc(promptList=["a", 5]), "promptList"),
    ("clip of wrong type", doc(claims=[clip(0), 7]), "clipFilenames"),
    ("missing userId", {k: v for k, v in doc().items() if k != "userId"}, "userId"),
    ("userId traversal", doc(userId=".."), "not '.' or '..'"),
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
    ("opt-out not a boolean", doc(reconcilerOptOut="yes"), "reconcilerOptOut: must be true"),
    ("opt-out a number", doc(reconcilerOptOut=1), "reconcilerOptOut: must be true or false"),
]


@pytest.mark.parametrize(("data", "message"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_project_is_refused_with_a_clear_reason(data: Any,
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


# --- fidelity to the app's real writes ------------------------------------------------------

def failed_by_timeout(marked: timedelta, updated: timedelta, ours: bool = True,
                      prompt_count: int = 3) -> Job:
    """A job failed by a timeout `marked` ago whose worker last wrote `updated` ago."""
    data: dict[str, Any] = {"projectId": "p1", "status": "failed", "promptCount": prompt_count,
                            "createdAt": NOW - timedelta(hours=2),
                            "updatedAt": NOW - updated,
                            "error": "Job timed out after 30 minutes"}
    if ours:
        data["timedOutAt"] = NOW - marked
    return Job.parse(JOB, data, NOW - min(marked, updated))


def test_scenario1_as_real_data_restores_from_an_older_job() -> None:
    """The clips sit under an older job; the latest (stuck) job of the same size has none."""
    older = job("completed", 15, job_id=OLD_JOB, created=timedelta(hours=5))
    stuck = job("processing", 15, updated=timedelta(hours=2))
    objects = tuple(obj(clip(i, job=OLD_JOB)) for i in range(15))
    plan, after = run_twice(doc("generating", 15, []), jobs=(older, stuck), objects=objects)
    assert after["status"] == "ready"
    assert after["clipFilenames"] == [clip(i, job=OLD_JOB) for i in range(15)]
    assert all(not c.startswith("gs://") for c in after["clipFilenames"])
    assert plan.report.stale_jobs == [JOB]


def test_objects_of_a_job_without_a_document_are_never_used() -> None:
    orphan = "reeljob-999999999999"
    objects = tuple(obj(clip(i, job=orphan)) for i in range(3))
    _plan, after = run_twice(doc("generating", 3, []), jobs=(job("failed", 3),),
                            objects=objects)
    assert after["clipFilenames"] == []
    assert after["status"] == "error"


def test_partial_failure_keeps_error_and_the_users_message() -> None:
    """The app's ordinary failure: error, 2 of 4 made, errorInfo is what the user reads."""
    claims = [clip(0), clip(1), None, None]
    data = doc("error", 4, claims, errorInfo={"message": "Veo quota exceeded"})
    plan, after = run_twice(data, jobs=(job("failed", 4),),
                            objects=(obj(clip(0)), obj(clip(1))))
    assert plan.update is None
    assert after["errorInfo"] == {"message": "Veo quota exceeded"}


def test_error_without_error_info_is_kept_and_valid() -> None:
    plan, _after = run_twice(doc("error", 2, [clip(0), None]), objects=(obj(clip(0)),))
    assert plan.update is None
    assert plan.report.corrected_status == "error"


def test_stitch_failure_error_info_with_timestamp_is_valid_and_kept_in_history() -> None:
    info = {"message": "ffmpeg exited 1", "timestamp": NOW - timedelta(hours=1)}
    claims = [clip(i) for i in range(2)]
    _plan, after = run_twice(doc("error", 2, claims, errorInfo=info),
                            objects=tuple(obj(c) for c in claims))
    assert after["status"] == "ready"
    assert after["lastReconciliation"]["previousErrorInfo"] == info


@pytest.mark.parametrize(("marked", "updated", "ours", "held"), [
    (timedelta(minutes=20), timedelta(minutes=5), True, True),     # life after our marker
    (timedelta(minutes=20), timedelta(minutes=20), True, False),   # our own write, no life
    (timedelta(hours=2), timedelta(minutes=45), True, False),      # life, then silence again
    (timedelta(minutes=20), timedelta(minutes=20), False, True),   # the app's cleanup: wait
    (timedelta(hours=2), timedelta(hours=2), False, False),        # ...one stale timeout
])
def test_revived_job_holds_its_project(marked: timedelta, updated: timedelta, ours: bool,
                                       held: bool) -> None:
    zombie = failed_by_timeout(marked, updated, ours)
    claims = [clip(0), clip(1), None]
    for forced in (False, True):
        plan = decide(observe(doc("generating", 3, claims), jobs=(zombie,),
                              objects=(obj(clip(0)), obj(clip(1))), forced=forced), SETTINGS)
        if held:
            assert plan.update is None
            assert "revived" in (plan.report.reason or "")
        else:
            assert plan.update is not None
            assert plan.update["status"] == "error"


def test_failed_job_with_other_error_is_not_revived() -> None:
    data = {"projectId": "p1", "status": "failed", "promptCount": 1, "error": "quota",
            "updatedAt": NOW - timedelta(minutes=1)}
    failed = Job.parse(JOB, data, NOW - timedelta(minutes=1))
    plan = decide(observe(doc("generating", 1, []), jobs=(failed,)), SETTINGS)
    assert plan.update is not None
    assert plan.update["status"] == "error"


@pytest.mark.parametrize("forced", [False, True])
def test_fresh_stitch_is_left_alone(forced: bool) -> None:
    claims = [clip(i) for i in range(2)]
    plan = decide(observe(doc("stitching", 2, claims), objects=tuple(obj(c) for c in claims),
                          written=timedelta(minutes=10), forced=forced), SETTINGS)
    assert plan.update is None
    assert "stitch in progress" in (plan.report.reason or "")


def test_stitch_timeout_is_its_own_setting() -> None:
    claims = [clip(0)]
    quick = PolicySettings(location=LOC, stitch_after=timedelta(minutes=5))
    plan = decide(observe(doc("stitching", 1, claims), objects=(obj(clip(0)),),
                          written=timedelta(minutes=10)), quick)
    assert plan.update is not None
    assert plan.update["status"] == "ready"
    assert DriftKind.STUCK_STITCHING in plan.report.drift_kinds


def test_stuck_stitch_gets_the_reel_its_dead_stitcher_uploaded() -> None:
    claims = [clip(i) for i in range(2)]
    reel = f"{PREFIX}stitched/reel_full_20261124T110000Z.mp4"
    objects = (*(obj(c, age=timedelta(hours=2)) for c in claims),
               obj(reel, age=timedelta(hours=1)))
    plan, after = run_twice(doc("stitching", 2, claims), objects=objects)
    assert after["status"] == "ready"
    assert after["stitchedFilename"] == reel
    assert plan.report.restored_stitched == reel
    assert DriftKind.RESTORED_STITCHED in plan.report.drift_kinds
    assert DriftKind.STUCK_STITCHING in plan.report.drift_kinds


@pytest.mark.parametrize(("reel_age", "usable", "stitched", "expected"), [
    (timedelta(hours=3), 2, None, None),                 # older than a clip: other clips
    (timedelta(hours=1), 1, None, None),                 # not every clip is there
    (timedelta(hours=1), 2, "gone", "reel"),              # a cleared path is replaced
    (timedelta(hours=1), 2, "there", "there"),            # a verified path is kept
])
def test_stitched_reel_restoration_rules(reel_age: timedelta, usable: int, stitched: str | None,
                                         expected: str | None) -> None:
    claims: list[str | None] = [clip(i) for i in range(usable)] + [None] * (2 - usable)
    reel = f"{PREFIX}stitched/stitched_p1.mp4"
    paths = {"gone": f"{PREFIX}stitched/old.mp4", "there": f"{PREFIX}stitched/kept.mp4",
             "reel": reel, None: None}
    objects = [obj(clip(i), age=timedelta(hours=2)) for i in range(usable)]
    objects.append(obj(reel, age=reel_age))
    if stitched == "there":
        objects.append(obj(paths["there"], age=timedelta(hours=4)))
    extra = {"stitchedFilename": paths[stitched]} if stitched else {}
    _plan, after = run_twice(doc("ready", 2, claims, **extra), objects=tuple(objects))
    assert after.get("stitchedFilename") == paths[expected]


@pytest.mark.parametrize("jobs", [(), (job("failed", 3),)])
def test_starting_generation_is_held_even_when_forced(jobs: tuple[Job, ...]) -> None:
    """The regenerate route writes `generating` before its job exists (D7)."""
    plan = decide(observe(doc("generating", 3, [clip(0), None, None]), jobs=jobs,
                          objects=(obj(clip(0)),), written=timedelta(seconds=5), forced=True),
                  SETTINGS)
    assert plan.update is None
    assert "generation starting" in (plan.report.reason or "")


def test_d6_a_null_slot_alone_is_not_rewritten() -> None:
    claims = [clip(0), None, clip(2)]
    plan = decide(observe(doc("draft", 3, claims), jobs=(job("completed", 3),),
                          objects=(obj(clip(0)), obj(clip(2)))), SETTINGS)
    assert plan.update is None
    assert plan.report.action is Action.NO_CHANGE


@pytest.mark.parametrize("data", [
    doc("draft", 3, []),
    doc("draft", 3, [clip(0)]),
    doc("ready", 1, [clip(0), clip(1), None]),
    doc("error", 3, [None, None, None]),
    {k: v for k, v in doc("draft", 2, [None, None]).items() if k != "durationSeconds"},
    doc("ready", 1, [clip(0)], stitchedFilename=None, errorInfo=None),
    doc("error", 1, [None], errorInfo={"message": "x", "timestamp": NOW}),
    doc("stitching", 1, [clip(0)]),
], ids=["empty list", "shorter", "longer", "all null", "no duration", "nulls",
        "error timestamp", "stitching"])
def test_shapes_the_app_writes_are_valid(data: dict[str, Any]) -> None:
    project = Project.parse("p1", data, NOW, LOC)
    assert project.status == data["status"]


def test_holds_that_pass_with_time_say_when() -> None:
    """Settling, a starting generation and a stitch end by themselves: the listener path looks
    again then; a live job ends with a write of its own, which the listener sees anyway."""
    settling = decide(observe(doc("ready", 1, []), written=timedelta(seconds=5)), SETTINGS)
    starting = decide(observe(doc("generating", 1, []), written=timedelta(seconds=5),
                              forced=True), SETTINGS)
    stitch = decide(observe(doc("stitching", 1, []), written=timedelta(minutes=10)), SETTINGS)
    live = decide(observe(doc("generating", 1, []), jobs=(job("queued", 1,
                                                              created=timedelta(minutes=1)),)),
                  SETTINGS)
    assert settling.report.retry_after == 25
    assert starting.report.retry_after == 25
    assert stitch.report.retry_after == 20 * 60
    assert live.report.retry_after is None


# --- opt-out ------------------------------------------------------------------------------

def stuck_with_clips(**extra: Any) -> tuple[dict[str, Any], tuple[Job, ...],
                                            tuple[ObjectInfo, ...]]:
    """Generating for ever, its job failed, both clips in the bucket and none listed."""
    return (doc("generating", 2, [], **extra), (job("failed", 2),),
            (obj(clip(0)), obj(clip(1))))


@pytest.mark.parametrize("forced", [False, True], ids=["automatic", "forced"])
def test_an_opted_out_project_is_reported_never_written(forced: bool) -> None:
    data, jobs, objects = stuck_with_clips(reconcilerOptOut=True)
    plan = decide(observe(data, jobs=jobs, objects=objects, forced=forced), SETTINGS)
    assert plan.update is None
    report = plan.report
    assert report.action is Action.SKIPPED
    assert report.retry_after is None
    assert report.reason == "opted out: reconcilerOptOut is true, nothing is written"
    # Observed all the same: the report says what a correction would have been.
    assert report.corrected_status == "ready"
    assert report.restored_clips == [clip(0), clip(1)]
    assert DriftKind.STUCK_GENERATING in report.drift_kinds
    assert report.heal_seconds is None


def test_an_opted_out_project_someone_else_owns_says_both() -> None:
    data = doc("generating", 2, [], reconcilerOptOut=True)
    live = (job("processing", 2, updated=timedelta(minutes=1)),)
    plan = decide(observe(data, jobs=live, forced=True), SETTINGS)
    assert plan.update is None
    assert plan.report.action is Action.SKIPPED
    assert (plan.report.reason or "").startswith("opted out: reconcilerOptOut is true")
    assert f"active job {JOB}" in (plan.report.reason or "")
    assert plan.report.drift_kinds == []
    assert plan.report.retry_after is None


@pytest.mark.parametrize("value", [False, None])
def test_an_opt_out_field_that_is_not_true_changes_nothing(value: bool | None) -> None:
    data, jobs, objects = stuck_with_clips(reconcilerOptOut=value)
    plan = decide(observe(data, jobs=jobs, objects=objects), SETTINGS)
    assert plan.update is not None
    assert plan.update["status"] == "ready"


def test_the_opt_out_field_is_a_setting() -> None:
    data, jobs, objects = stuck_with_clips(keepOff=True, reconcilerOptOut=False)
    own = replace(SETTINGS, opt_out_field="keepOff")
    project = Project.parse("p1", data, NOW - timedelta(hours=1), LOC, own.opt_out_field)
    observation = Observation(project=project, jobs=jobs, objects=objects, outside={},
                              now=NOW, forced=True)
    plan = decide(observation, own)
    assert plan.update is None
    assert plan.report.reason == (
        "opted out: keepOff is true, nothing is written")
    # Under the default name the same document is an ordinary stuck project.
    assert decide(observe(data, jobs=jobs, objects=objects), SETTINGS).update is not None


# --- flapping -----------------------------------------------------------------------------

FLAPPY = replace(SETTINGS, flap_corrections=2, flap_window=timedelta(minutes=60),
                 flap_hold=timedelta(minutes=30))


def war(reverts: list[timedelta], settings: PolicySettings = FLAPPY,
        revert: Mapping[str, Any] | None = None) -> list[Plan]:
    """A stuck project corrected, then put back by another writer after each delay (the
    decision comes a minute after each revert): the plan of each decision."""
    data, jobs, objects = stuck_with_clips()
    undo = dict(revert or {"status": "generating", "clipFilenames": []})
    plans, now = [], NOW
    for delay in [timedelta(0), *reverts]:
        now += delay
        project = Project.parse("p1", data, now - timedelta(minutes=1), LOC)
        plan = decide(Observation(project=project, jobs=jobs, objects=objects, outside={},
                                  now=now), settings)
        plans.append(plan)
        data = {**apply(data, plan), **undo}
    return plans


def test_a_correction_undone_n_times_is_held_then_tried_again() -> None:
    m = timedelta(minutes=1)
    plans = war([5 * m, 5 * m, 5 * m, 20 * m, 6 * m])
    written = [plan.update is not None for plan in plans]
    # two corrections (each undone), then held: until 30 minutes after the second one
    assert written == [True, True, False, False, True, True]
    held = plans[2].report
    assert held.action is Action.SKIPPED
    assert DriftKind.FLAPPING in held.drift_kinds
    assert DriftKind.STUCK_GENERATING in held.drift_kinds, "the drift is still reported"
    assert held.held_until == NOW + 5 * m + 30 * m
    assert held.retry_after == (30 - 5) * 60
    assert (held.reason or "").startswith(
        "flapping: corrected 2 times in 1h and undone by another writer each time")
    assert plans[3].report.retry_after == (35 - 15) * 60
    # after the hold the count starts again: the next one is written, then one more
    streaks = [len((p.update or {}).get("lastReconciliation", {}).get("streak", []))
               for p in plans]
    assert streaks == [1, 2, 0, 0, 1, 2]


def test_corrections_far_apart_are_not_flapping() -> None:
    plans = war([timedelta(minutes=61)] * 4)
    assert all(plan.update is not None for plan in plans)
    assert all(DriftKind.FLAPPING not in plan.report.drift_kinds for plan in plans)


def test_a_different_correction_each_time_is_not_flapping() -> None:
    """The writer does not undo what we did: it edits the prompts each time, so each
    correction has another result, and is written."""
    data, jobs, objects = stuck_with_clips()
    jobs = (*jobs, job("failed", 1, job_id=OLD_JOB))
    now = NOW
    for prompts in (2, 1, 2, 1, 2):
        data = {**data, "status": "generating", "clipFilenames": [],
                "promptList": [f"prompt {i}" for i in range(prompts)]}
        project = Project.parse("p1", data, now - timedelta(minutes=1), LOC)
        plan = decide(Observation(project=project, jobs=jobs, objects=objects, outside={},
                                  now=now), FLAPPY)
        assert plan.update is not None
        assert DriftKind.FLAPPING not in plan.report.drift_kinds
        data = apply(data, plan)
        now += timedelta(minutes=1)


@pytest.mark.parametrize("corrections", [1, 3])
def test_the_number_of_corrections_is_a_setting(corrections: int) -> None:
    plans = war([timedelta(minutes=1)] * 4, replace(FLAPPY, flap_corrections=corrections))
    assert [plan.update is not None for plan in plans] == (
        [True] * corrections + [False] * (5 - corrections))


def test_a_summary_without_a_streak_counts_nothing() -> None:
    """Older versions of ours wrote no fingerprint: the count starts with the next one."""
    data, jobs, objects = stuck_with_clips(lastReconciliation={"at": NOW, "basedOn": "x"})
    project = Project.parse("p1", data, NOW - timedelta(hours=1), LOC)
    assert project.last_correction is None
    plan = decide(Observation(project=project, jobs=jobs, objects=objects, outside={},
                              now=NOW), FLAPPY)
    assert plan.update is not None
    assert plan.update["lastReconciliation"]["streak"] == [NOW]


def test_a_new_generation_between_corrections_is_a_new_episode() -> None:
    """The user starts a generation again and its worker dies: the same correction is due,
    but the owner worked on the project in between; nothing was undone."""
    data, jobs, objects = stuck_with_clips()
    now = NOW
    for attempt in range(4):
        project = Project.parse("p1", data, now - timedelta(minutes=1), LOC)
        plan = decide(Observation(project=project, jobs=jobs, objects=objects, outside={},
                                  now=now), FLAPPY)
        assert plan.update is not None, attempt
        data = {**apply(data, plan), "status": "generating", "clipFilenames": []}
        now += timedelta(minutes=3)
        retry = job("failed", 2, job_id=f"reeljob-{attempt:012d}", created=timedelta(0),
                    updated=timedelta(0))
        jobs = (*jobs, replace(retry, created_at=now - timedelta(minutes=2),
                               updated_at=now - timedelta(minutes=1)))


def test_a_stitch_that_dies_again_and_again_is_not_flapping() -> None:
    """Each stuck stitch waited out the stitch timeout: the stitcher owned the project."""
    claims = [clip(0), clip(1)]
    data = doc("stitching", 2, claims)
    objects = (obj(clip(0)), obj(clip(1)))
    now = NOW
    for attempt in range(4):
        project = Project.parse("p1", data, now - timedelta(minutes=31), LOC)
        plan = decide(Observation(project=project, jobs=(), objects=objects, outside={},
                                  now=now), FLAPPY)
        assert plan.update is not None, attempt
        assert plan.update["status"] == "ready", attempt
        data = {**apply(data, plan), "status": "stitching"}
        now += timedelta(minutes=1)
