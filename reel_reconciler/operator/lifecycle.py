"""The life of one ReelReconciler inside the operator: (re)start its runtime when the spec
changes, and publish what its timers find as status and conditions. Configuration errors
become a Ready=False condition and an Event, retried with backoff; never a crash loop."""

from __future__ import annotations

import logging
import time
from typing import Any, assert_never

import kopf

from reel_reconciler import metrics
from reel_reconciler.backoff import backoff
from reel_reconciler.config import ConfigError
from reel_reconciler.engine import StaleCleanup, SweepResult
from reel_reconciler.engine.breaker import BreakerState
from reel_reconciler.engine.listener import CONNECTING
from reel_reconciler.model import Action, ReconcilerId, Report, RestartReason
from reel_reconciler.operator import RESUME_WRITES
from reel_reconciler.operator.memo import Shared
from reel_reconciler.operator.status import StatusWriter, kept_splits, sweep_summary
from reel_reconciler.runtime import Hooks, ReconcilerRuntime
from reel_reconciler.runtime.liveness import forget_loop, watch_loop
from reel_reconciler.spec import ReconcilerSpec

log = logging.getLogger(__name__)

GENERATION_POLL = 1.0
"""Seconds between looks at the object's generation: a spec change (Observe, suspend) stops
the old runtime's writes within about this long."""
RETRY_MIN, RETRY_MAX = 5.0, 300.0
SUPERVISOR_TOLERANCE = 300.0
"""Seconds a supervisor's loop may go without turning before the process counts as hung: a
restart may wait for the old runtime's drain and a new connect's retries, never this long."""


class Supervisor:
    """Owns the runtime of one ReelReconciler for as long as the object exists."""

    def __init__(self, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo) -> None:
        self.body, self.namespace, self.name = body, namespace, name
        self.status = StatusWriter(namespace, name)
        self.shared = Shared(self.status)
        self.shared.keep_in(memo)
        self.runtime: ReconcilerRuntime | None = None
        """Set while it connects, so that a stop stops it too; `shared` has it once started."""
        self._generation: Any = object()
        self._failures = 0
        self._retry_at: float | None = None
        self.reconciler = ReconcilerId(name, namespace)
        self.label = self.reconciler.label

    async def run(self, stopped: kopf.DaemonStopped) -> None:
        loop = watch_loop(f"{self.namespace}/{self.name} supervisor", SUPERVISOR_TOLERANCE)
        try:
            while not stopped:
                loop.tick()
                generation = self.body.get("metadata", {}).get("generation")
                due = self._retry_at is not None and time.monotonic() >= self._retry_at
                if generation != self._generation or due:
                    self._generation = generation
                    await self._restart(generation)
                await stopped.wait(GENERATION_POLL)
        finally:
            forget_loop(loop)
            try:
                await self._stop()
            finally:
                metrics.absent(self.label)

    async def _stop(self) -> None:
        """The runtime's writes end before the first await (see ReconcilerRuntime.stop)."""
        runtime, self.runtime = self.runtime, None
        self.shared.runtime = None
        if runtime is not None:
            metrics.presence(self.label, wanted=True, running=False)
            await runtime.stop()

    async def _restart(self, generation: int | None) -> None:
        await self._stop()
        self._retry_at = None
        try:
            spec = ReconcilerSpec.parse(self.body.get("spec"))
        except ConfigError as exc:
            metrics.presence(self.label, wanted=True, running=False)
            await self._not_ready("InvalidSpec", str(exc), generation)
            return
        metrics.presence(self.label, wanted=not spec.suspend, running=False)
        if spec.suspend:
            self.status.set("Ready", False, "Suspended", "spec.suspend is true: no work is done",
                            generation)
            self.status.set("ListenerHealthy", False, "Suspended", "listeners are closed")
            await self.status.write({"observedGeneration": generation})
            return
        runtime = ReconcilerRuntime(self.reconciler, spec, hooks=Hooks(
            on_sweep=self._publish_sweep, on_stale=self._publish_cleanup,
            on_tick=self._publish_listeners, on_breaker=self._publish_breaker,
            on_flapping=self._publish_flapping), splits=kept_splits(self.body))
        self.runtime = runtime  # a stop while it connects stops it too
        try:
            await runtime.start()
        except ConfigError as exc:
            self.runtime = None
            await runtime.stop()
            self._failures += 1
            delay = backoff(self._failures, RETRY_MIN, RETRY_MAX)
            self._retry_at = time.monotonic() + delay
            await self._not_ready("ConnectFailed", f"{exc} (retrying in {delay:.0f}s)",
                                  generation)
            return
        self._failures = 0
        self.shared.runtime = runtime
        metrics.presence(self.label, wanted=True, running=True)
        mode = "observe mode: drift is reported, nothing written" if spec.observe else "enforce"
        self.status.set("Ready", True, "Started",
                        f"watching {spec.storage.bucket} and Firestore "
                        f"{spec.firestore.database} ({mode})", generation)
        self.status.set("ListenerHealthy", False, "Connecting", "waiting for the first heartbeat")
        await self.status.write({"observedGeneration": generation})
        kopf.info(self.body, reason="Started", message=f"reconciler started ({mode})")
        if runtime.breaker_state.tripped:
            await self._publish_breaker(runtime.breaker_state)

    async def _not_ready(self, reason: str, message: str, generation: int | None) -> None:
        log.error("reconciler not ready", extra={"reconciler": f"{self.namespace}/{self.name}",
                                                 "reason": reason, "error": message})
        self.status.set("Ready", False, reason, message, generation)
        self.status.set("ListenerHealthy", False, reason, "listeners are not running")
        await self.status.write({"observedGeneration": generation})
        kopf.warn(self.body, reason=reason, message=message)

    async def _publish_sweep(self, result: SweepResult) -> None:
        if self.runtime is not None:
            await publish_sweep(self.status, self.runtime, result)

    async def _publish_breaker(self, state: BreakerState) -> None:
        """A trip is rare and a person must act: an Event and the Drifted condition say so,
        until a resume."""
        if state.tripped:
            message = (f"destructive corrections paused: {state.reason}; fix the configuration, "
                       f"then annotate {RESUME_WRITES}=<token> (other corrections go on)")
            self.status.set("Drifted", True, "BreakerTripped", message)
            kopf.warn(self.body, reason="BreakerTripped", message=message)
            await self.status.write()
        else:
            self.status.set("Drifted", False, "WritesResumed",
                            "destructive corrections resumed; the next sweep shows the drift")
            kopf.info(self.body, reason="WritesResumed",
                      message=f"destructive corrections resumed ({state.resumed_token})")
            await self.status.write({"lastHandledResumeWrites": state.resumed_token})

    async def _publish_cleanup(self, result: StaleCleanup) -> None:
        await self.status.write(stale_summary(result))

    async def _publish_flapping(self, report: Report) -> None:
        """One Event per hold: rare by design, unlike corrections, which only log."""
        kopf.warn(self.body, reason="ProjectFlapping",
                  message=f"project {report.project_id}: {report.reason}")

    async def _publish_listeners(self, restarted: RestartReason | None) -> None:
        listeners = self.runtime.listeners if self.runtime is not None else None
        if listeners is None:
            return
        subscription, problem = listeners.notifications, listeners.notifications_problem
        if listeners.healthy:
            live = "projects, jobs and heartbeat listeners are live"
            if subscription is not None:
                live += ", and the notification subscription is pulling"
            changed = self.status.set("ListenerHealthy", True, "Listening", live)
        elif subscription is not None and problem is not None and listeners.firestore_up:
            reason = {RestartReason.SUBSCRIPTION_MISSING: "SubscriptionMissing",
                      CONNECTING: "SubscriptionConnecting"}.get(problem, "SubscriptionFailed")
            changed = self.status.set(
                "ListenerHealthy", False, reason,
                f"{subscription.path}: {subscription.error or 'connecting'}; retried with "
                "backoff")
        else:
            reason = "Reconnecting" if restarted is None else _condition_reason(restarted)
            changed = self.status.set("ListenerHealthy", False, reason,
                                      "listeners restarted; waiting for the heartbeat")
        if changed:
            await self.status.write()


def _condition_reason(restarted: RestartReason) -> str:
    """The ListenerHealthy condition's reason after a restart (mypy holds it to every
    reason there is)."""
    match restarted:
        case RestartReason.SILENCE:
            return "HeartbeatSilent"
        case RestartReason.CLOSED:
            return "ListenerClosed"
        case RestartReason.CALLBACK_ERROR:
            return "CallbackFailed"
        case RestartReason.SCHEDULED:
            return "Resubscribing"
        case RestartReason.SUBSCRIPTION_MISSING:
            return "SubscriptionMissing"
        case RestartReason.SUBSCRIPTION_FAILED:
            return "SubscriptionFailed"
        case _:
            assert_never(restarted)


async def publish_sweep(status: StatusWriter, runtime: ReconcilerRuntime, result: SweepResult,
                        extra: dict[str, Any] | None = None) -> None:
    """Last sweep summary and the Drifted condition, from one sweep's result."""
    drift = result.actions[Action.DRIFT]
    if runtime.breaker_state.tripped:
        pass  # Drifted names the breaker until writes are resumed
    elif runtime.spec.observe:
        status.set("Drifted", drift > 0, "DriftFound" if drift else "InSync",
                   f"{drift} project(s) drift from GCS; observe mode writes nothing"
                   if drift else "no drift in the last sweep")
    else:
        corrected = result.actions[Action.CORRECTED]
        status.set("Drifted", False, "Corrected" if corrected else "InSync",
                   f"{corrected} project(s) corrected in the last sweep")
    await status.write({"lastSweep": sweep_summary(result), **(extra or {})})


def stale_summary(result: StaleCleanup) -> dict[str, Any]:
    return {"lastStaleJobCleanup": {"staleJobs": len(result.stale_jobs),
                                    **({"error": result.error} if result.error else {})}}
