"""`reel-reconciler delete-reconciler`: delete a ReelReconciler and wait until it is gone.

The chart's uninstall hook runs it while the operator still runs. Kopf keeps a finalizer on
every ReelReconciler it serves (its daemons always require one) and removes it once the
daemon has stopped; an operator that is gone never will, and the object would stay
Terminating for ever (and its namespace with it). So when the finalizer is still there after
--timeout, this removes Kopf's finalizer itself: the operator keeps nothing outside its own
process, so nothing is left behind. Other finalizers are never touched.
"""

from __future__ import annotations

import argparse
import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from reel_reconciler import defaults
from reel_reconciler.config import ConfigError, format_duration, parse_duration
from reel_reconciler.logs import add_log_arguments, setup_logging
from reel_reconciler.operator import GROUP, KOPF_FINALIZER, PLURAL, VERSION
from reel_reconciler.preflight import check_kube_config
from reel_reconciler.usage import OneLineParser, fail, invalid

PROG = "reel-reconciler delete-reconciler"
POLL_SECONDS = 1.0
CONFLICT_RETRIES = 5
TIMEOUT = defaults.KUBE_REQUEST_TIMEOUT.total_seconds()
EXIT_OK, EXIT_FAILED = 0, 1

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    ABSENT = "absent"  # nothing to delete
    RELEASED = "released"  # the operator removed its finalizer
    FORCED = "forced"  # the operator did not answer: its finalizer was removed here


class StillThere(RuntimeError):
    """The object outlived both waits: finalizers other than Kopf's hold it."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Delete a ReelReconciler and wait until it is gone; past "
        "--timeout, remove the operator's finalizer (an operator that is not running never "
        "will).")
    parser.add_argument("name", help="the ReelReconciler's name")
    parser.add_argument("-n", "--namespace", required=True, help="its namespace")
    parser.add_argument("--timeout", default=format_duration(defaults.DELETE_TIMEOUT),
                        metavar="DURATION",
                        help="how long the operator is given to release it, then how long "
                        "the object may take to go once its finalizer is removed "
                        "(default: %(default)s)")
    add_log_arguments(parser, "INFO")
    return parser


class Deleter:
    """One ReelReconciler, through the API the operator's RBAC names (get, delete, patch)."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str, name: str,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.clock, self.sleep = clock, sleep
        self.where = {"reconciler": f"{namespace}/{name}"}

    def run(self, timeout: float) -> Outcome:
        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                     self.name, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                log.info("no such ReelReconciler: nothing to delete", extra=self.where)
                return Outcome.ABSENT
            raise
        log.info("ReelReconciler deleted; waiting for the operator to release it",
                 extra={**self.where, "timeoutSeconds": timeout})
        if self._gone_within(timeout):
            return Outcome.RELEASED
        log.warning("the operator did not release the ReelReconciler in time (not running?): "
                    "removing its finalizer", extra={**self.where, "finalizer": KOPF_FINALIZER})
        self._drop_kopf_finalizer()
        if self._gone_within(timeout):
            return Outcome.FORCED
        raise StillThere(f"{self.namespace}/{self.name} is still there after "
                         f"{2 * timeout:.0f}s, held by finalizers {self._finalizers()}")

    def _get(self) -> dict[str, Any] | None:
        try:
            obj = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                        self.name, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], obj)

    def _finalizers(self) -> list[str]:
        obj = self._get()
        return list((obj or {}).get("metadata", {}).get("finalizers") or [])

    def _gone_within(self, timeout: float) -> bool:
        deadline = self.clock() + timeout
        while self._get() is not None:
            if self.clock() >= deadline:
                return False
            self.sleep(POLL_SECONDS)
        return True

    def _drop_kopf_finalizer(self) -> None:
        """Kopf's finalizer out, the others kept: the patch carries the resourceVersion it was
        computed from, so a finalizer added meanwhile gets a 409 and a fresh read, not lost."""
        for _ in range(CONFLICT_RETRIES):
            obj = self._get()
            if obj is None:
                return
            finalizers = list(obj["metadata"].get("finalizers") or [])
            if KOPF_FINALIZER not in finalizers:
                return
            patch = {"metadata": {
                "resourceVersion": obj["metadata"]["resourceVersion"],
                "finalizers": [f for f in finalizers if f != KOPF_FINALIZER] or None}}
            try:
                self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                        self.name, patch,
                                                        _request_timeout=TIMEOUT)
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                if exc.status != 409:
                    raise
        raise StillThere(f"{self.namespace}/{self.name}: its finalizers kept changing; "
                         f"{KOPF_FINALIZER} could not be removed")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        timeout = parse_duration(args.timeout).total_seconds()
    except ValueError as exc:
        return fail(invalid("--timeout", str(exc), args.timeout), PROG)
    try:
        check_kube_config("it")
    except ConfigError as exc:
        return fail(str(exc), PROG)
    deleter = Deleter(client.CustomObjectsApi(), args.namespace, args.name)
    try:
        outcome = deleter.run(timeout)
    except StillThere as exc:
        log.error("ReelReconciler not deleted", extra={**deleter.where, "error": str(exc)})
        return EXIT_FAILED
    except ApiException as exc:
        log.error("ReelReconciler not deleted", extra={
            **deleter.where, "status": exc.status, "error": f"{exc.status} {exc.reason}"})
        return EXIT_FAILED
    log.info("ReelReconciler gone", extra={**deleter.where, "outcome": outcome.value})
    return EXIT_OK
