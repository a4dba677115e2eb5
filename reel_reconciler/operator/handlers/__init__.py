"""Kopf handlers, one trigger a file; importing this package registers them all. The timers
(sweep, stale jobs, watchdog) belong to the runtime the supervisor starts."""

from reel_reconciler.operator.handlers import annotations, presence, startup, supervisor

__all__ = ["annotations", "presence", "startup", "supervisor"]
