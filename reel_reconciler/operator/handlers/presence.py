"""What shows a reconciler that is not running: how many ReelReconcilers want a runtime (from
the watch stream, so a resource whose daemon never started still counts) against how many
run here, and a liveness probe that fails when a supervisor or a watchdog timer hangs."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from reel_reconciler import metrics
from reel_reconciler.operator import GROUP, PLURAL, VERSION
from reel_reconciler.runtime import RUNTIMES
from reel_reconciler.runtime.liveness import stalled

WANTED: dict[str, bool] = {}
"""Every ReelReconciler this operator has seen, by namespace/name: True unless suspended or
being deleted."""

class _Quiet(logging.Filter):
    """This handler runs at every watch event: its success is not news (Kopf logs every
    handler's at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Handler 'presence' succeeded."


logging.getLogger("kopf.objects").addFilter(_Quiet())
metrics.RESOURCES_WANTED.set_function(lambda: sum(WANTED.values()))
metrics.RESOURCES_RUNNING.set_function(lambda: len(RUNTIMES))


@kopf.on.event(GROUP, VERSION, PLURAL, id="presence")
async def seen(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str,
               **_: Any) -> None:
    key = f"{namespace or 'default'}/{name}"
    if event.get("type") == "DELETED":
        WANTED.pop(key, None)
        return
    spec = body.get("spec") or {}
    deleting = body.get("metadata", {}).get("deletionTimestamp") is not None
    WANTED[key] = not deleting and spec.get("suspend") is not True


@kopf.on.probe(id="loops")
async def loops(**_: Any) -> str:
    """Kopf's /healthz fails (500) when any loop is silent past its tolerance."""
    hung = stalled()
    if hung:
        raise kopf.PermanentError("; ".join(hung))
    return "turning"
