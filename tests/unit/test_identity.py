"""A reconciler's identity: one object spells its metrics label, its documents' ids and its
Kubernetes key, and `resume-writes --reconciler LABEL` finds the same reconciler again."""

from __future__ import annotations

import pytest

from reel_reconciler.model import COMMAND_LINE, WATCH, ReconcilerId


@pytest.mark.parametrize(("reconciler", "label", "key"), [
    (ReconcilerId("main", "reels"), "reels.main", "reels/main"),
    (ReconcilerId("v1.2", "reels"), "reels.v1.2", "reels/v1.2"),
    (WATCH, "local.watch", "local/watch"),
    (COMMAND_LINE, "cli", "cli"),
])
def test_label_and_key_name_the_same_reconciler(reconciler: ReconcilerId, label: str,
                                                key: str) -> None:
    assert (reconciler.label, reconciler.key, str(reconciler)) == (label, key, label)
    assert ReconcilerId.from_label(label) == reconciler
