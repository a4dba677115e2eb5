"""What the handlers of one ReelReconciler share through Kopf's per-object memo, typed: the
supervisor keeps it there, the annotation handlers read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import kopf

from reel_reconciler.operator.status import StatusWriter
from reel_reconciler.runtime import ReconcilerRuntime


@dataclass
class Shared:
    status: StatusWriter
    """The one writer of the object's status: its conditions are merged in this process."""
    runtime: ReconcilerRuntime | None = None
    """The runtime while it runs (None while it connects, is stopped or suspended)."""

    KEY: ClassVar[str] = "reelReconciler"

    def keep_in(self, memo: kopf.Memo) -> None:
        memo[self.KEY] = self

    @classmethod
    def of(cls, memo: kopf.Memo) -> Shared | None:
        """None before the supervisor of the object first ran."""
        found = memo.get(cls.KEY)
        return found if isinstance(found, cls) else None
