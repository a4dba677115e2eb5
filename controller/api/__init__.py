"""The seed's reconcile endpoint, served safely: authenticated callers, owner-only for end
users, JSON errors, a rate limit per caller, an outage answered 503."""

from controller.api.app import start_api
from controller.api.settings import ApiSettings

__all__ = ["ApiSettings", "start_api"]
