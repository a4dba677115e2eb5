"""The pure reconciliation policy (DESIGN.md §3): observation in, plan out, no I/O."""

from controller.policy.decide import decide
from controller.policy.jobs import is_active, is_stale, latest_job_for
from controller.policy.slots import outside_names
from controller.policy.status import target_status

__all__ = ["decide", "is_active", "is_stale", "latest_job_for", "outside_names", "target_status"]
