"""A reconciler at run time, shared by the operator and `reel-reconciler watch`."""

from reel_reconciler.runtime.hooks import Hooks
from reel_reconciler.runtime.reconciler import ReconcilerRuntime
from reel_reconciler.runtime.registry import RUNTIMES
from reel_reconciler.runtime.timers import jittered

__all__ = ["RUNTIMES", "Hooks", "ReconcilerRuntime", "jittered"]
