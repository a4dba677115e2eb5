"""The operator's peering priority. Kopf pauses every replica whose priority another live
replica equals or beats: two replicas that drew the same number would both pause, and no
reconciler would run. So the default priority is drawn from a range where a tie is
negligible, and never equals the priority of a live peer already in the peering object."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from reel_reconciler import defaults

log = logging.getLogger(__name__)

KOPF_GROUP, KOPF_VERSION = "kopf.dev", "v1"
DEFAULT_PEERING = "default"
HIGHEST = 2**31 - 1
"""Kubernetes keeps integers as int64; Kopf compares them as Python ints."""


def live_priorities(status: dict[str, Any], now: datetime | None = None) -> set[int]:
    """Priorities of the peers whose last keep-alive has not expired."""
    now = now or datetime.now(UTC)
    found: set[int] = set()
    for peer in status.values():
        if not isinstance(peer, dict):
            continue
        try:
            seen = datetime.fromisoformat(str(peer["lastseen"]))
            lifetime = timedelta(seconds=float(peer.get("lifetime", 60)))
            priority = int(peer.get("priority", 0))
        except (KeyError, TypeError, ValueError):
            continue
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        if seen + lifetime > now:
            found.add(priority)
    return found


def draw(taken: set[int], rng: random.Random | None = None) -> int:
    """A priority in [1, HIGHEST] that no live peer holds."""
    rng = rng or random.SystemRandom()
    while True:
        priority = rng.randint(1, HIGHEST)
        if priority not in taken:
            return priority


def peer_status(name: str | None, clusterwide: bool, namespaces: list[str]) -> dict[str, Any]:
    """The peering object's peers (empty if it cannot be read: the draw is then unguarded,
    a tie still a one-in-a-billion chance)."""
    api = client.CustomObjectsApi()
    peering = name or DEFAULT_PEERING
    try:
        if clusterwide or not namespaces:
            body = api.get_cluster_custom_object(KOPF_GROUP, KOPF_VERSION,
                                                 "clusterkopfpeerings", peering,
                                                 _request_timeout=defaults.KUBE_REQUEST_TIMEOUT.total_seconds())
        else:
            body = api.get_namespaced_custom_object(KOPF_GROUP, KOPF_VERSION, namespaces[0],
                                                    "kopfpeerings", peering,
                                                    _request_timeout=defaults.KUBE_REQUEST_TIMEOUT.total_seconds())
    except (ApiException, OSError) as exc:
        log.info("peering object not read: priority drawn unguarded",
                 extra={"peering": peering, "error": str(exc).splitlines()[0]})
        return {}
    status = body.get("status") if isinstance(body, dict) else None
    return status if isinstance(status, dict) else {}


def choose_priority(name: str | None, clusterwide: bool, namespaces: list[str]) -> int:
    priority = draw(live_priorities(peer_status(name, clusterwide, namespaces)))
    log.info("peering priority drawn", extra={"priority": priority})
    return priority
