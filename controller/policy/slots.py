"""Clip slots: verify each claimed path, restore empty slots from the latest job's folder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from controller.model import Job, ObjectInfo, Observation, Project

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
        self._listed = {obj.name for obj in observation.objects}
        self._outside = observation.outside
        self._prefix = prefix

    def exists(self, name: str) -> bool:
        if name.startswith(self._prefix):
            return name in self._listed
        if name not in self._outside:
            raise ValueError(f"no metadata read for {name!r}, outside the project's prefix")
        return self._outside[name] is not None


def restore_candidates(objects: tuple[ObjectInfo, ...], prefix: str,
                       job: Job | None) -> dict[int, ObjectInfo]:
    """For each prompt index, the newest non-empty .mp4 under raw/{jobId}/prompt-{i:02d}/."""
    if job is None:
        return {}
    folder = f"{prefix}raw/{job.id}/"
    newest: dict[int, ObjectInfo] = {}
    for obj in objects:
        if not obj.name.startswith(folder) or obj.size <= 0:
            continue
        parts = obj.name[len(folder):].split("/")
        match = _PROMPT_DIR.fullmatch(parts[0])
        if len(parts) < 2 or match is None or not obj.name.lower().endswith(".mp4"):
            continue
        index = int(match.group(1))
        if parts[0] != f"prompt-{index:02d}":
            continue
        best = newest.get(index)
        if best is None or (obj.updated, obj.name) > (best.updated, best.name):
            newest[index] = obj
    return newest


def resolve_slots(observation: Observation, presence: Presence, prefix: str,
                  source: Job | None) -> list[Slot]:
    """Exactly n slots: verified claims kept as stored, missing ones emptied, empties restored."""
    project = observation.project
    candidates = restore_candidates(observation.objects, prefix, source)
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


def outside_names(project: Project, prefix: str) -> set[str]:
    """Claimed object names outside the project's prefix: each needs its own metadata read."""
    claims = project.claim_objects[: project.prompt_count]
    names = {name for name in (*claims, project.stitched_object) if name}
    return {name for name in names if not name.startswith(prefix)}
