"""The soak's judge: reads the recorded history of every document against the invariants a
reconciler beside a live app must keep. It shares no code with the reconciler's policy: the
ownership rules are written again here from the design, so that a policy bug cannot hide.

A violation is concluded only from versions the history saw; a version it missed can hide one
(a false negative), never invent one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devkit.history import History, Version

INVARIANTS = ("hands_off", "error_info_lost", "clip_removed", "precondition", "slow_heal",
              "left_stuck", "write_war", "crashed", "rss_growth", "history_gap")
"""The last one is the soak's own: its recorder must have seen the writes the reconciler
logged, or every other check would pass on a blind record."""
EPSILON = timedelta(milliseconds=500)
"""Slack on time comparisons between the reconciler's clock and the server's."""
ACTIVE = ("queued", "processing")
STUCK_STATUSES = ("generating", "stitching")


@dataclass(frozen=True)
class Timing:
    stale: timedelta
    settle: timedelta
    sweep: timedelta
    stitch: timedelta
    patience: float = 1.0
    """The run's scale on waits (tests/support/patience.py): 1 holds the bound as written."""

    @property
    def heal_bound(self) -> timedelta:
        """How long a stuck project may wait: it goes stale, a sweep comes, it settles."""
        return (self.stale + self.sweep + self.settle) * self.patience


@dataclass(frozen=True)
class Stuck:
    """A moment the workload left a project for the reconciler to heal."""

    project_id: str
    at: datetime
    kind: str


@dataclass
class Verdict:
    violations: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    writes: int = 0
    heal_seconds: list[float] = field(default_factory=list)

    def flag(self, invariant: str, example: str) -> None:
        self.violations[invariant] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{invariant}: {example}")


@dataclass(frozen=True)
class Write:
    """A version the reconciler made: its decision time, and the version it was based on."""

    version: Version
    at: datetime
    based_on: datetime | None


def our_writes(versions: list[Version]) -> list[Write]:
    """The versions that carry a new `lastReconciliation`: each is one write of ours."""
    writes, last = [], None
    for version in versions:
        at = version.ours
        if at is not None and at != last:
            summary = (version.data or {}).get("lastReconciliation") or {}
            based = summary.get("basedOn")
            writes.append(Write(version, at, based if isinstance(based, datetime) else None))
        last = at
    return writes


def _state_at(versions: list[Version], moment: datetime) -> Version | None:
    """The last recorded version written at or before `moment`."""
    found = None
    for version in versions:
        if version.update_time <= moment:
            found = version
    return found


def _sign_of_life(job: dict[str, Any]) -> datetime | None:
    for key in ("updatedAt", "startedAt", "createdAt"):
        value = job.get(key)
        if isinstance(value, datetime):
            return value
    return None


def owner(project: Version, jobs: Iterable[dict[str, Any]], now: datetime,
          timing: Timing) -> str | None:
    """Who owns the project at `now`, judged from what the reconciler had read."""
    data = project.data or {}
    if project.update_time > now - timing.settle + EPSILON:
        return "written within the settle window"
    if data.get("status") == "stitching" and project.update_time > now - timing.stitch + EPSILON:
        return "a fresh stitch"
    for job in jobs:
        sign = _sign_of_life(job)
        if sign is None or sign <= now - timing.stale + EPSILON:
            continue
        if job.get("status") in ACTIVE:
            return f"live job {job.get('jobId')}"
        error = job.get("error")
        timed_out = isinstance(error, str) and error.startswith("Job timed out")
        marker = job.get("timedOutAt")
        if job.get("status") == "failed" and timed_out and (
                not isinstance(marker, datetime) or sign > marker):
            return f"revived job {job.get('jobId')}"
    return None


def _jobs_of(history: History) -> dict[str, list[list[Version]]]:
    found: dict[str, list[list[Version]]] = {}
    for job_id in history.documents("jobs"):
        versions = history.versions("jobs", job_id)
        project = next((v.data.get("projectId") for v in versions if v.data), None)
        if isinstance(project, str):
            found.setdefault(project, []).append(versions)
    return found


def _jobs_at(job_histories: list[list[Version]], moment: datetime) -> list[dict[str, Any]]:
    states = (_state_at(versions, moment) for versions in job_histories)
    return [state.data for state in states if state is not None and state.data]


def _paths(data: dict[str, Any] | None) -> list[str]:
    return [c for c in (data or {}).get("clipFilenames") or [] if isinstance(c, str) and c]


def check(history: History, timing: Timing, stuck: list[Stuck],
          objects: dict[str, datetime], outages: list[tuple[datetime, datetime]],
          end: datetime) -> Verdict:
    """Judge the whole run. `objects`: every object at the end and when it was created (the
    workload deletes none); `outages`: when a service or the reconciler was down."""
    verdict = Verdict()
    jobs = _jobs_of(history)
    writes_of: dict[str, list[Write]] = {}
    for project_id in history.documents("projects"):
        versions = history.versions("projects", project_id)
        writes = our_writes(versions)
        writes_of[project_id] = writes
        verdict.writes += len(writes)
        for write in writes:
            _check_write(verdict, project_id, write, versions, jobs.get(project_id, []),
                         objects, timing)
        _check_war(verdict, project_id, writes, versions, timing)
        _check_end(verdict, project_id, versions, jobs.get(project_id, []), end, timing)
    for event in stuck:
        _check_heal(verdict, event, history.versions("projects", event.project_id),
                    writes_of.get(event.project_id, []), outages, end, timing)
    return verdict


def _check_write(verdict: Verdict, project_id: str, write: Write, versions: list[Version],
                 job_histories: list[list[Version]], objects: dict[str, datetime],
                 timing: Timing) -> None:
    mine = write.version
    if write.based_on is None:
        verdict.flag("precondition", f"{project_id}: a write without basedOn")
        return
    between = [v for v in versions if write.based_on < v.update_time < mine.update_time]
    if between:
        verdict.flag("precondition", f"{project_id}: written at {mine.update_time} over "
                     f"{len(between)} version(s) newer than the one read ({write.based_on})")
    basis = next((v for v in versions if v.update_time == write.based_on), None)
    if basis is None:
        return
    who = owner(basis, _jobs_at(job_histories, write.based_on), write.at, timing)
    if who is not None:
        verdict.flag("hands_off", f"{project_id}: written at {mine.update_time} while {who}")
    before, after = (basis.data or {}).get("errorInfo"), (mine.data or {}).get("errorInfo")
    kept = ((mine.data or {}).get("lastReconciliation") or {}).get("previousErrorInfo")
    if before and after != before and kept != before:
        verdict.flag("error_info_lost", f"{project_id}: {before!r} gone at {mine.update_time}")
    remaining = set(_paths(mine.data))
    for path in _paths(basis.data):
        created = objects.get(path)
        if path not in remaining and created is not None and created < write.at:
            verdict.flag("clip_removed", f"{project_id}: {path} removed while it existed")


_BOOKKEEPING = frozenset({"lastReconciliation", "updatedAt"})


def _changed(versions: list[Version], version: Version) -> set[str]:
    """The fields a version changed from the one recorded before it."""
    at = versions.index(version)
    before = (versions[at - 1].data or {}) if at else {}
    after = version.data or {}
    return {key for key in before.keys() | after.keys()
            if before.get(key) != after.get(key)} - _BOOKKEEPING


def _check_war(verdict: Verdict, project_id: str, writes: list[Write], versions: list[Version],
               timing: Timing) -> None:
    """A war: three writes of ours within one stale timeout, each changing a field the one
    before changed. We keep re-correcting what someone keeps undoing (or undo ourselves).
    Two writes can be two honest corrections: a worker we healed around comes back and fails,
    a reel lands after we gave up on its stitcher; a third within the window is a fight."""
    for first, second, third in zip(writes, writes[1:], writes[2:], strict=False):
        if third.at - first.at >= timing.stale:
            continue
        changed = [_changed(versions, write.version) for write in (first, second, third)]
        fought = changed[0] & changed[1] & changed[2]
        if fought:
            verdict.flag("write_war", f"{project_id}: {sorted(fought)} written at "
                         f"{first.at}, {second.at} and {third.at}")


def _check_end(verdict: Verdict, project_id: str, versions: list[Version],
               job_histories: list[list[Version]], end: datetime, timing: Timing) -> None:
    last = versions[-1] if versions else None
    if last is None or last.data is None:
        return
    if last.data.get("status") not in STUCK_STATUSES:
        return
    if end - last.update_time < timing.heal_bound:
        return
    if owner(last, _jobs_at(job_histories, end), end, timing) is None:
        verdict.flag("left_stuck", f"{project_id}: {last.data.get('status')} since "
                     f"{last.update_time}, nobody owns it")


def _resolution(versions: list[Version], writes: list[Write], event: Stuck
                ) -> tuple[Version, bool] | None:
    """The version that ended the stuck state, and whether it was ours: our write, or the
    app's own move (a user who starts a new generation on a stuck project heals it too)."""
    stuck = _state_at(versions, event.at)
    status = (stuck.data or {}).get("status") if stuck is not None else None
    mine = {write.version.update_time for write in writes}
    for version in versions:
        if version.update_time <= event.at:
            continue
        if version.update_time in mine:
            return version, True
        if (version.data or {}).get("status") != status:
            return version, False
    return None


def _check_heal(verdict: Verdict, event: Stuck, versions: list[Version], writes: list[Write],
                outages: list[tuple[datetime, datetime]], end: datetime, timing: Timing) -> None:
    state = _state_at(versions, event.at)
    if state is not None and (state.data or {}).get("status") not in STUCK_STATUSES:
        return  # healed before the episode ended: an outage held its worker past its hold
    bound = timing.heal_bound + timedelta(seconds=5)
    window_end = event.at + bound
    for start, stop in outages:
        if start < window_end and stop > event.at:
            bound += stop - start
    resolved = _resolution(versions, writes, event)
    if resolved is None:
        if end - event.at > bound:
            verdict.flag("slow_heal", f"{event.project_id} ({event.kind}): never healed")
        return
    version, ours = resolved
    seconds = (version.update_time - event.at).total_seconds()
    if ours:
        verdict.heal_seconds.append(seconds)
    if timedelta(seconds=seconds) > bound:
        who = "healed" if ours else "still stuck when the app moved on"
        verdict.flag("slow_heal", f"{event.project_id} ({event.kind}): {who} after "
                     f"{seconds:.1f}s")
