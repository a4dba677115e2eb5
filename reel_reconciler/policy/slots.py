"""Clip slots: verify each claimed path, restore empty slots from the project's jobs' folders,
and find a stitched reel that a dead stitcher uploaded but never recorded."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from reel_reconciler.model import Job, ObjectInfo, Observation, Project

_PROMPT_DIR = re.compile(r"prompt-(\d{2,})")


class SlotState(StrEnum):
    VERIFIED = "verified"
    MISSING = "missing"
    RESTORED = "restored"
    EMPTY = "empty"


@dataclass(frozen=True)
class Slot:
    """Slot i of a project after reconciliation: what was claimed and what it holds now."""

    index: int
    claim: str | None
    state: SlotState
    value: str | None


class Presence:
    """Answers "does this object exist?" from one observation, never by guessing.

    Under the project's prefix the listing is complete; outside it only a metadata read
    can tell, and a name with no such read is a programming error, not an absence.
    """

    def __init__(self, observation: Observation, prefix: str) -> None:
        self._listed = {obj.name: obj for obj in observation.objects}
        self._outside = observation.outside
        self._prefix = prefix

    def exists(self, name: str) -> bool:
        return self.info(name) is not None

    def info(self, name: str) -> ObjectInfo | None:
        """The object's listing or metadata entry; None if it does not exist."""
        if name.startswith(self._prefix):
            return self._listed.get(name)
        if name not in self._outside:
            raise ValueError(f"no metadata read for {name!r}, outside the project's prefix")
        return self._outside[name]


def _playable(obj: ObjectInfo) -> bool:
    return obj.size > 0 and obj.name.lower().endswith(".mp4")


def restore_candidates(objects: tuple[ObjectInfo, ...], prefix: str,
                       job: Job) -> dict[int, ObjectInfo]:
    """For each prompt index, the newest non-empty .mp4 under raw/{jobId}/prompt-{i:02d}/."""
    folder = f"{prefix}raw/{job.id}/"
    newest: dict[int, ObjectInfo] = {}
    for obj in objects:
        if not obj.name.startswith(folder) or not _playable(obj):
            continue
        parts = obj.name[len(folder):].split("/")
        match = _PROMPT_DIR.fullmatch(parts[0])
        if len(parts) < 2 or match is None:
            continue
        index = int(match.group(1))
        if parts[0] != f"prompt-{index:02d}":
            continue
        best = newest.get(index)
        if best is None or (obj.updated, obj.name) > (best.updated, best.name):
            newest[index] = obj
    return newest


def merged_candidates(objects: tuple[ObjectInfo, ...], prefix: str,
                      sources: list[Job]) -> dict[int, ObjectInfo]:
    """Per prompt index, the clip of the newest source job that has one. Folders of job ids
    with no job document are never looked at: nothing says which prompts they were for."""
    merged: dict[int, ObjectInfo] = {}
    for job in sources:
        for index, found in restore_candidates(objects, prefix, job).items():
            merged.setdefault(index, found)
    return merged


def resolve_slots(observation: Observation, presence: Presence, prefix: str,
                  sources: list[Job]) -> list[Slot]:
    """Exactly n slots: verified claims kept as stored, missing ones emptied, empties restored."""
    project = observation.project
    candidates = merged_candidates(observation.objects, prefix, sources)
    slots: list[Slot] = []
    for index in range(project.prompt_count):
        claim = project.claims[index] if index < len(project.claims) else None
        name = project.claim_objects[index] if index < len(project.claim_objects) else None
        if name is not None and presence.exists(name):
            slots.append(Slot(index, claim, SlotState.VERIFIED, claim))
            continue
        found = candidates.get(index)
        if found is not None:
            slots.append(Slot(index, claim, SlotState.RESTORED, found.name))
        elif name is not None:
            slots.append(Slot(index, claim, SlotState.MISSING, None))
        else:
            slots.append(Slot(index, claim, SlotState.EMPTY, None))
    return slots


def stitched_candidate(observation: Observation, presence: Presence, prefix: str,
                       slots: list[Slot]) -> ObjectInfo | None:
    """The newest reel under `stitched/` if it is newer than every clip it could be made of:
    a stitcher that died after its upload. Older reels were made of other clips."""
    clips = [presence.info(name) for name in _slot_objects(observation.project, slots)]
    if not clips or any(info is None for info in clips):
        return None
    newest_clip = max(info.updated for info in clips if info is not None)
    folder = f"{prefix}stitched/"
    reels = [obj for obj in observation.objects
             if obj.name.startswith(folder) and _playable(obj) and obj.updated > newest_clip]
    return max(reels, key=lambda obj: (obj.updated, obj.name), default=None)


def _slot_objects(project: Project, slots: list[Slot]) -> list[str]:
    """The object name each filled slot holds (a verified claim as its object name)."""
    names: list[str] = []
    for slot in slots:
        if slot.state is SlotState.VERIFIED:
            name = project.claim_objects[slot.index]
            if name is not None:
                names.append(name)
        elif slot.state is SlotState.RESTORED and slot.value is not None:
            names.append(slot.value)
    return names


def outside_names(project: Project, prefix: str) -> set[str]:
    """Claimed object names outside the project's prefix: each needs its own metadata read."""
    claims = project.claim_objects[: project.prompt_count]
    names = {name for name in (*claims, project.stitched_object) if name}
    return {name for name in names if not name.startswith(prefix)}
