"""The reports of a run as a table for people: what each project was, what became of it, why."""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from reel_reconciler.model import Action, Report

_STYLES = {Action.ERROR: "red", Action.CONFLICT: "red", Action.CORRECTED: "green",
           Action.DRIFT: "yellow", Action.SKIPPED: "dim"}


def _status(r: Report) -> str:
    """The status a row had, or `before → after` when this run changed (or would change) it.
    A skipped project keeps its status: nothing was decided about it."""
    before = r.original_status or "?"
    if r.action is Action.SKIPPED or r.corrected_status in (None, r.original_status):
        return before
    return f"{before} → {r.corrected_status}"


def _action(r: Report) -> str:
    """The action; a skip says why, since "skipped" alone leaves the reader guessing."""
    if r.action is Action.SKIPPED and r.reason:
        return f"{r.action.value} ({r.reason})"
    return r.action.value


def report_table(reports: Sequence[Report], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("project", overflow="fold")
    table.add_column("status")
    for column in ("claimed", "verified", "missing", "restored"):
        table.add_column(column, justify="right")
    table.add_column("action", no_wrap=True)
    table.add_column("note", overflow="fold")
    for r in reports:
        style = _STYLES.get(r.action, "")
        action = escape(_action(r))
        note = r.error or ("" if r.action is Action.SKIPPED else r.reason) or ", ".join(
            k.value for k in r.drift_kinds)
        table.add_row(escape(r.project_id), _status(r), str(r.claimed_clips), str(r.verified_clips),
                      str(len(r.missing_clips)), str(len(r.restored_clips)),
                      f"[{style}]{action}[/]" if style else action, escape(note))
    return table
