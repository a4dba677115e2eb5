"""A deliberate test double: `reel-reconciler` with one safety rule broken, for the soak's
proof that its checker catches what it must. The product has no switch for either rule.

    python -m tests.soak.broken hands-off watch --settle 2s ...
    python -m tests.soak.broken precondition watch --settle 2s ...

In this process only, the product's policy or Firestore store is wrapped at its public
boundary, then the product's own CLI main runs with the remaining arguments:

- hands-off: `hold_reason` finds no hold, so projects a job, a stitcher or the settle window
  owns are written anyway (caught as `hands_off`);
- precondition: each project write is guarded on the document's current version, read again
  just before the write, instead of the version the decision was made on: the write lands
  over whatever the app wrote meanwhile, as a blind write does (caught as `precondition`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from reel_reconciler import cli
from reel_reconciler.model import Observation, PolicySettings
from reel_reconciler.policy import Hold
from reel_reconciler.stores.firestore import FirestoreStore

Updates = Mapping[str, tuple[Mapping[str, Any], datetime]]


def ignore_holds() -> None:
    """The policy's `decide` asks `hold_reason` whose project it is: nobody's, from now on."""

    def no_hold(*_: Observation | PolicySettings) -> Hold | None:
        return None

    # By its full name: `reel_reconciler.policy` re-exports the function `decide` over the module.
    vars(importlib.import_module("reel_reconciler.policy.decide"))["hold_reason"] = no_hold


def write_over_newer_versions() -> None:
    """Project writes are guarded on the version there now, not on the one that was read."""
    update_project = FirestoreStore.update_project
    update_projects = FirestoreStore.update_projects

    def current(store: FirestoreStore, project_ids: Sequence[str]) -> dict[str, datetime]:
        return {found.id: found.update_time
                for found in store.get_projects(project_ids).values()}

    def blind_update_project(self: FirestoreStore, project_id: str, fields: Mapping[str, Any],
                             read_update_time: datetime) -> datetime:
        now = current(self, [project_id]).get(project_id, read_update_time)
        return update_project(self, project_id, fields, now)

    def blind_update_projects(self: FirestoreStore, updates: Updates) -> dict[str, datetime]:
        now = current(self, list(updates))
        return update_projects(self, {project_id: (fields, now.get(project_id, read))
                                      for project_id, (fields, read) in updates.items()})

    FirestoreStore.update_project = blind_update_project  # type: ignore[method-assign]
    FirestoreStore.update_projects = blind_update_projects  # type: ignore[method-assign]


BREAKS: dict[str, Callable[[], None]] = {"hands-off": ignore_holds,
                                         "precondition": write_over_newer_versions}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in BREAKS:
        raise SystemExit(f"usage: python -m tests.soak.broken {{{'|'.join(BREAKS)}}} "
                         "COMMAND [ARGS...]")
    BREAKS[args[0]]()
    return cli.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
