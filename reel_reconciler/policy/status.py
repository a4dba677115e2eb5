"""The status table: the status a project should have, written so that applying it twice
changes nothing (D5)."""

from __future__ import annotations

from reel_reconciler.model import ProjectStatus


def target_status(current: ProjectStatus, prompt_count: int, usable: int) -> ProjectStatus:
    """The status a project with `usable` verified+restored clips of `prompt_count` should have.

    Only called for a project nobody owns (no live job, no fresh stitch). A generation that
    stopped short becomes `error`, and an `error` short of clips stays one: its message is
    what the user reads, whoever wrote it.
    """
    if prompt_count == 0:
        return "draft"
    if usable == prompt_count:
        return "ready"
    if current in ("generating", "error"):
        return "error"
    return "draft"


def error_message(prompt_count: int, usable: int) -> str:
    """Why a stopped generation was marked `error`, in words the app's UI can show."""
    if usable == 0:
        return (f"Generation stopped: no clip made (0 of {prompt_count}); "
                "marked as error by reel-reconciler")
    return (f"Generation stopped after {usable} of {prompt_count} clips; "
            "marked as error by reel-reconciler")
