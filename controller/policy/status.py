"""The status rule of DESIGN.md §3, written so that applying it twice changes nothing (D5)."""

from __future__ import annotations

from controller.model import ProjectStatus


def target_status(current: ProjectStatus, prompt_count: int, usable: int) -> ProjectStatus:
    """The status a project with `usable` verified+restored clips of `prompt_count` should have.

    With no clip at all, `generating` becomes `error` and `error` stays `error`:
    a failed generation keeps its error however often the reconciler runs.
    """
    if prompt_count == 0:
        return "draft"
    if usable == prompt_count:
        return "ready"
    if usable > 0:
        return "draft"
    if current in ("generating", "error"):
        return "error"
    return "draft"
