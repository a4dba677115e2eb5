"""Why the watchdog restarted a listener: one vocabulary for the restart counter's `reason`
label, the log field and the operator's ListenerHealthy condition."""

from __future__ import annotations

from enum import StrEnum


class RestartReason(StrEnum):
    CALLBACK_ERROR = "callback_error"
    """Our own callback raised: the listener's stream is no longer trusted."""
    CLOSED = "closed"
    """A Firestore listener's stream ended (closed, refused by the server, or broken)."""
    SILENCE = "silence"
    """The heartbeat listener heard nothing past the silence threshold."""
    SCHEDULED = "scheduled"
    """The periodic resubscription, whatever the health."""
    SUBSCRIPTION_MISSING = "subscription_missing"
    """The notification subscription does not exist."""
    SUBSCRIPTION_FAILED = "subscription_failed"
    """The notification subscription's pull ended with another error."""

    @property
    def of_subscription(self) -> bool:
        return self in (RestartReason.SUBSCRIPTION_MISSING, RestartReason.SUBSCRIPTION_FAILED)


FIRESTORE_RESTART_REASONS = tuple(r for r in RestartReason if not r.of_subscription)
"""Why the Firestore listeners (projects, jobs, heartbeat) are restarted."""
