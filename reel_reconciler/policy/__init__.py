"""The pure reconciliation policy: observation in, plan out, no I/O."""

from reel_reconciler.policy.decide import Hold, decide, fingerprint, hold_reason
from reel_reconciler.policy.jobs import is_active, is_revived, is_stale, restore_sources
from reel_reconciler.policy.slots import outside_names
from reel_reconciler.policy.status import error_message, target_status

__all__ = ["Hold", "decide", "error_message", "fingerprint", "hold_reason", "is_active",
           "is_revived", "is_stale", "outside_names", "restore_sources", "target_status"]
