"""Operator-wide settings: where Kopf keeps its state, and which cluster the status writer uses."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from reel_reconciler import defaults
from reel_reconciler.operator import KOPF_FINALIZER
from reel_reconciler.preflight import load_kube_config

KOPF_PREFIX = "kopf.reelmaker.io"
INSTANT_EXIT = 20.0


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Kopf ignores annotations under its own prefix when diffing, so it must not be
    # "reelmaker.io": the reconcile-* annotations users set live there.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration")
    # Kopf's default, set here so that `delete-reconciler` removes the same one.
    settings.persistence.finalizer = KOPF_FINALIZER
    settings.posting.level = logging.INFO
    # A replica that dies without a goodbye is given up on after this many seconds.
    settings.peering.lifetime = 30
    # A stopping supervisor ends its runtime's writes at once and drains in seconds: wait
    # that long for it in place, instead of re-checking after the cancellation backoff (a
    # deleted ReelReconciler would sit in Terminating for a minute).
    settings.background.instant_exit_timeout = INSTANT_EXIT
    # The server ends each watch-stream on this schedule; Kopf resumes from the last version.
    # Whole seconds: Kopf sends it as written and the API server rejects "60.0" (400).
    settings.watching.server_timeout = int(defaults.WATCH_SERVER_TIMEOUT.total_seconds())
    # A stream the server has not ended by then went deaf (a blip ate the close): reconnect.
    settings.watching.client_timeout = defaults.WATCH_CLIENT_TIMEOUT.total_seconds()
    # A connection opens in milliseconds; one that does not is retried instead of awaited.
    settings.watching.connect_timeout = defaults.KUBE_CONNECT_TIMEOUT.total_seconds()
    # Kopf's default (300 s) would hold an object's handlers that long on a dead connection.
    settings.networking.request_timeout = defaults.KOPF_REQUEST_TIMEOUT.total_seconds()
    # The same for opening the connections of Kopf's patches, events and peering.
    settings.networking.connect_timeout = defaults.KUBE_CONNECT_TIMEOUT.total_seconds()
    load_kube_config()
