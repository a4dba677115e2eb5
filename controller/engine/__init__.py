"""The imperative shell: observe with the stores, decide with the policy, apply, record."""

from controller.engine.reconcile import Engine
from controller.engine.stale import StaleCleanup, cleanup_stale_jobs
from controller.engine.sweep import SweepResult, sweep
from controller.model import Trigger

__all__ = ["Engine", "StaleCleanup", "SweepResult", "Trigger", "cleanup_stale_jobs", "sweep"]
