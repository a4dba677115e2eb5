"""The ReelReconciler status: conditions (Ready, ListenerHealthy, Drifted) and summaries, and
the one place that writes them to the status subresource."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from reel_reconciler import defaults
from reel_reconciler.engine.sweep import SweepResult
from reel_reconciler.model import Action, Report
from reel_reconciler.operator import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 3
"""Each attempt that times out drops the dead connection it went out on; writes that ran at
the same time can have left more than one in the client's pool."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(conditions: list[dict[str, Any]], kind: str, ok: bool, reason: str,
              message: str, generation: int | None = None) -> list[dict[str, Any]]:
    """Conditions with `kind` set; its transition time moves only when its status flips."""
    status = "True" if ok else "False"
    previous = next((c for c in conditions if c.get("type") == kind), None)
    transition = previous["lastTransitionTime"] if previous and previous.get(
        "status") == status else _now()
    entry: dict[str, Any] = {"type": kind, "status": status, "reason": reason,
                             "message": message[:1024], "lastTransitionTime": transition}
    if generation is not None:
        entry["observedGeneration"] = generation
    return [c for c in conditions if c.get("type") != kind] + [entry]


def sweep_summary(result: SweepResult) -> dict[str, Any]:
    actions = result.actions
    return {
        "time": _now(), "scanned": result.scanned, "documentsRead": result.documents_read,
        "corrected": actions[Action.CORRECTED], "drift": actions[Action.DRIFT],
        "skipped": actions[Action.SKIPPED],
        "errors": actions[Action.ERROR] + actions[Action.CONFLICT],
        "durationSeconds": round(result.duration_seconds, 3),
        **({"aborted": result.aborted} if result.aborted else {}),
        **({"splits": result.splits, "splitsFor": result.splits_for} if result.splits else {}),
        **({"delta": result.delta} if result.delta is not None else {}),
    }


def kept_splits(body: Mapping[str, Any]) -> dict[int, tuple[str, ...]]:
    """The split points of the last ranged sweep that status kept, by the number of ranges
    they were made for: a restarted operator cuts where its predecessor counted."""
    last = (body.get("status") or {}).get("lastSweep") or {}
    splits, count = last.get("splits"), last.get("splitsFor")
    if not isinstance(count, int) or not isinstance(splits, list):
        return {}
    if not all(isinstance(point, str) for point in splits):
        return {}
    return {count: tuple(splits)}


def reports_summary(reports: Sequence[Report]) -> str:
    """One line for one Kubernetes Event: what a request for named projects did, by action;
    the projects themselves are in status.lastProjectReports and the change log."""
    actions = Counter(report.action for report in reports)
    counts = ", ".join(f"{action.value} {count}" for action, count in sorted(actions.items()))
    return (f"{len(reports)} project(s) reconciled: {counts}; see "
            "status.lastProjectReports")


class StatusWriter:
    """Merge-patches the status subresource; conditions are owned by this process alone."""

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace, self.name = namespace, name
        self.conditions: list[dict[str, Any]] = []
        self._api = client.CustomObjectsApi()

    def set(self, kind: str, ok: bool, reason: str, message: str,
            generation: int | None = None) -> bool:
        """Update one condition locally; True when something a reader would see changed."""
        before = {(c["type"], c["status"], c["reason"], c["message"]) for c in self.conditions}
        self.conditions = condition(self.conditions, kind, ok, reason, message, generation)
        after = {(c["type"], c["status"], c["reason"], c["message"]) for c in self.conditions}
        return before != after

    async def write(self, extra: Mapping[str, Any] | None = None) -> None:
        """A write that fails is logged, not raised: the next one carries every condition."""
        body = {"status": {"conditions": self.conditions, **(extra or {})}}
        timeout = defaults.KUBE_REQUEST_TIMEOUT.total_seconds()
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await asyncio.to_thread(
                    self._api.patch_namespaced_custom_object_status, GROUP, VERSION,
                    self.namespace, PLURAL, self.name, body, _request_timeout=timeout)
                return
            except ApiException as exc:
                if exc.status == 404:
                    return  # the object is being deleted
                log.warning("status write failed", extra={"reconciler": self.name,
                                                          "status": exc.status})
                return
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                # The client closes the connection that failed; the next attempt opens another.
                # A merge patch of the same body is safe to send twice.
                if attempt == WRITE_ATTEMPTS:
                    log.warning("status write failed", extra={
                        "reconciler": self.name, "attempts": attempt, "error": str(exc)})

