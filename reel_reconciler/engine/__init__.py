"""The imperative shell: observe with the stores, decide with the policy, apply, record."""

from reel_reconciler.engine.reconcile import Engine
from reel_reconciler.engine.stale import StaleCleanup, cleanup_stale_jobs
from reel_reconciler.engine.sweep import SweepResult, sweep
from reel_reconciler.model import Trigger

__all__ = ["Engine", "StaleCleanup", "SweepResult", "Trigger", "cleanup_stale_jobs", "sweep"]
