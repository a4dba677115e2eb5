"""Kopf handlers, one trigger a file; importing this package registers them all."""

from controller.operator.handlers import (
    annotations,
    stale_jobs,
    startup,
    supervisor,
    sweep,
)

__all__ = ["annotations", "stale_jobs", "startup", "supervisor", "sweep"]
