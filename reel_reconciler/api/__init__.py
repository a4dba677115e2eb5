"""The seed's reconcile endpoint, served safely: authenticated callers, owner-only for end
users, JSON errors, a rate limit per caller, an outage answered 503. `settings` holds the
flags; `app` serves (imported only where the endpoint runs: it brings the token libraries)."""
