"""The soak's checker on histories written by hand: each invariant it must enforce, broken
once, is reported; the same story told right is not. (The broken-reconciler runs of
`make soak-check` prove it on real histories.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devkit.history import History, Version
from tests.soak.checker import Stuck, Timing, Verdict, check

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TIMING = Timing(stale=timedelta(seconds=8), settle=timedelta(seconds=2),
                sweep=timedelta(seconds=15), stitch=timedelta(seconds=8))
CLIP = "reel-maker/u/p/raw/reeljob-aaaaaaaaaaaa/prompt-00/sample_0.mp4"


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def project(status: str, clips: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"userId": "u", "status": status, "promptList": ["a"],
            "clipFilenames": clips if clips is not None else [CLIP], **extra}


def ours(data: dict[str, Any], at: float, based_on: float, **summary: Any) -> dict[str, Any]:
    return {**data, "lastReconciliation": {"at": s(at), "basedOn": s(based_on), **summary}}


def job(status: str, updated: float, **extra: Any) -> dict[str, Any]:
    return {"jobId": "reeljob-aaaaaaaaaaaa", "projectId": "p", "status": status,
            "updatedAt": s(updated), **extra}


def judge(projects: list[tuple[float, dict[str, Any]]],
          jobs: Sequence[tuple[float, dict[str, Any]]] = (), stuck: Sequence[Stuck] = (),
          objects: dict[str, datetime] | None = None,
          outages: Sequence[tuple[datetime, datetime]] = (), end: float = 120) -> Verdict:
    history = History()
    for at, data in projects:
        history.record(Version("projects", "p", s(at), data))
    for at, data in jobs:
        history.record(Version("jobs", "reeljob-aaaaaaaaaaaa", s(at), data))
    return check(history, TIMING, list(stuck), objects or {}, list(outages), s(end))


def violations(verdict: Verdict) -> dict[str, int]:
    return {name: count for name, count in verdict.violations.items() if count}


# A worker died at 10 s; its job went stale at 18 s; we healed at 19 s.
STORY_JOBS = [(0, job("processing", 0)), (10, job("processing", 10))]
STORY = [(0, project("generating", [None])), (10, project("generating")),
         (19.5, ours(project("ready"), at=19.2, based_on=10))]


def test_a_good_story_has_no_violation() -> None:
    verdict = judge(STORY, STORY_JOBS, stuck=[Stuck("p", s(10), "worker died")],
                    objects={CLIP: s(9)})
    assert violations(verdict) == {}
    assert verdict.writes == 1
    assert verdict.heal_seconds == [9.5]


def test_a_write_while_the_job_lives_breaks_hands_off() -> None:
    early = [*STORY[:2], (14.5, ours(project("ready"), at=14.2, based_on=10))]
    assert violations(judge(early, STORY_JOBS)) == {"hands_off": 1}


def test_a_write_over_a_newer_version_breaks_the_precondition() -> None:
    raced = [*STORY[:2], (19.0, project("generating", title="renamed")), STORY[2]]
    assert "precondition" in violations(judge(raced, STORY_JOBS))


def test_an_error_info_dropped_without_history_is_lost() -> None:
    failed = [(0, project("error", errorInfo={"message": "quota"})),
              (30, ours(project("ready", errorInfo=None), at=29.8, based_on=0))]
    assert violations(judge(failed)) == {"error_info_lost": 1}
    kept = [failed[0], (30, ours(project("ready", errorInfo=None), at=29.8, based_on=0,
                                 previousErrorInfo={"message": "quota"}))]
    assert violations(judge(kept)) == {}


def test_a_clip_removed_while_its_object_existed() -> None:
    emptied = [(0, project("ready")), (30, ours(project("draft", [None]), at=29.8, based_on=0))]
    assert violations(judge(emptied, objects={CLIP: s(-5)})) == {"clip_removed": 1}
    assert violations(judge(emptied, objects={})) == {}


def test_three_writes_within_the_stale_timeout_that_keep_undoing_are_a_war() -> None:
    war = [*STORY, (21, project("generating")),
           (24, ours(project("ready"), at=23.8, based_on=21)), (25, project("generating")),
           (26.5, ours(project("ready"), at=26.2, based_on=25))]
    assert "write_war" in violations(judge(war, STORY_JOBS))


def test_two_honest_corrections_around_an_app_episode_are_no_war() -> None:
    """We healed around a silent worker; it came back, failed, and we healed again."""
    twice = [*STORY, (21, project("error", errorInfo={"message": "quota"})),
             (24, ours(project("ready"), at=23.8, based_on=21,
                       previousErrorInfo={"message": "quota"}))]
    assert "write_war" not in violations(judge(twice, STORY_JOBS))


def test_an_episode_that_ends_after_we_healed_its_project_has_nothing_left_to_heal() -> None:
    """A stitcher held up by a storage outage uploads after its hold ran out and we healed
    the project: when it dies, the project is no longer stuck."""
    healed = [(0, project("stitching")), (9.5, ours(project("ready"), at=9.2, based_on=0)),
              (100, project("generating"))]
    stuck = [Stuck("p", s(14), "stitcher died after its upload")]
    assert "slow_heal" not in violations(judge(healed, stuck=stuck))
    still = [(0, project("stitching")), (100, project("generating"))]
    assert "slow_heal" in violations(judge(still, stuck=stuck))


def test_a_second_write_that_completes_the_first_is_no_war() -> None:
    """The stitcher's upload lands after we gave up on it: the reel is restored next."""
    reel = "reel-maker/u/p/stitched/reel.mp4"
    done = [(0, project("stitching")),
            (19.5, ours(project("ready"), at=19.2, based_on=0)),
            (23.5, ours(project("ready", stitchedFilename=reel), at=23.2, based_on=19.5))]
    assert "write_war" not in violations(judge(done, objects={CLIP: s(-5), reel: s(21)}))


@pytest.mark.parametrize(("outage", "slow"), [(None, True), ((s(12), s(40)), False)])
def test_a_heal_past_the_bound_is_slow_unless_an_outage_explains_it(
        outage: tuple[datetime, datetime] | None, slow: bool) -> None:
    late = [*STORY[:2], (50, ours(project("ready"), at=49.8, based_on=10))]
    verdict = judge(late, STORY_JOBS, stuck=[Stuck("p", s(10), "worker died")],
                    outages=[outage] if outage else [])
    assert ("slow_heal" in violations(verdict)) is slow


def test_a_project_nobody_heals_is_left_stuck() -> None:
    assert violations(judge(STORY[:2], STORY_JOBS)) == {"left_stuck": 1}
    stitching = [(0, project("stitching"))]
    assert violations(judge(stitching, end=10)) == {}
    assert violations(judge(stitching, end=60)) == {"left_stuck": 1}


def test_a_zombie_owns_its_project() -> None:
    marked = job("failed", 20, error="Job timed out after 8 seconds", timedOutAt=s(20))
    revived = {**marked, "updatedAt": s(24)}
    history = [*STORY[:2], (25, project("generating", title="zombie")),
               (26.5, ours(project("error"), at=26.2, based_on=25))]
    verdict = judge(history, [*STORY_JOBS, (20, marked), (24, revived)])
    assert violations(verdict)["hands_off"] == 1


def test_a_user_who_moves_on_heals_a_stuck_project_too() -> None:
    """A new generation started on a stuck project ends the story: no write of ours is due."""
    moved_on = [*STORY[:2], (14, project("draft", [None])), (15, project("generating", [None]))]
    verdict = judge(moved_on, STORY_JOBS, stuck=[Stuck("p", s(10), "worker died")], end=16)
    assert violations(verdict) == {}
    assert verdict.heal_seconds == []
