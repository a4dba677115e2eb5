"""A reconciler at run time, shared by the operator and `reel-reconciler watch`."""

from reel_reconciler.runtime.reconciler import RUNTIMES, Hooks, ReconcilerRuntime, jittered

__all__ = ["RUNTIMES", "Hooks", "ReconcilerRuntime", "jittered"]
