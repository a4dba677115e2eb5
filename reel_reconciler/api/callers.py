"""Who is calling: an end user (a Firebase ID token, owner-only) or a service in the cluster
(a ServiceAccount token, any project of its reconciler). The token's unverified issuer only
chooses which check to run; each check verifies the token in full.

A ServiceAccount's reviews cost the API server two requests: their outcome (allowed,
refused, forbidden) is remembered for a few seconds by a hash of the token, never the token
itself, and identical tokens arriving together share one review."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from enum import StrEnum

from reel_reconciler.api.cache import Recent
from reel_reconciler.api.errors import ApiError, unauthenticated
from reel_reconciler.api.firebase import FirebaseTokens, is_firebase_issuer
from reel_reconciler.api.outbound import Outbound
from reel_reconciler.api.service_accounts import ServiceAccounts, ServiceCaller
from reel_reconciler.api.tokens import parse_jwt

REVIEW_TTL = 10.0
"""Seconds a review's outcome is reused: a revoked token or a removed RoleBinding takes
effect within this."""
MAX_REVIEWS = 10_000


class CallerKind(StrEnum):
    USER = "user"
    SERVICE = "service"


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    id: str
    """A Firebase uid, or a ServiceAccount's username."""

    @property
    def key(self) -> str:
        """What the rate limit counts by."""
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Audience:
    """What a token must be for: the Firebase project of end users' tokens, and the
    ReelReconciler whose `reconcile` subresource services must be allowed."""

    firebase_project: str
    namespace: str
    name: str


class Refused(ApiError):
    """A refusal, with the kind of caller the token claimed to be (for the log)."""

    def __init__(self, error: ApiError, kind: str) -> None:
        super().__init__(error.status, error.code, error.message, error.retry_after,
                         error.headers, error.reason)
        self.kind = kind


Review = ServiceCaller | ApiError


class Callers:
    def __init__(self, firebase: FirebaseTokens, accounts: ServiceAccounts | None,
                 outbound: Outbound) -> None:
        self.firebase = firebase
        self.accounts = accounts
        self.outbound = outbound
        self.reviews: Recent[bytes, Review] = Recent(REVIEW_TTL, MAX_REVIEWS)
        self._reviewing: dict[bytes, asyncio.Future[Review]] = {}

    async def identify(self, authorization: str | None, audience: Audience) -> Caller:
        """Raises Refused (401, 403, 503) unless the credentials are good."""
        kind = "unknown"
        try:
            token = bearer_token(authorization)
            jwt = parse_jwt(token)
            if is_firebase_issuer(jwt.claims.get("iss")):
                kind = CallerKind.USER.value
                uid = await self.firebase.uid(jwt, audience.firebase_project)
                return Caller(CallerKind.USER, uid)
            if self.accounts is None:
                raise unauthenticated("expected a Firebase ID token (issuer "
                                      "https://securetoken.google.com/PROJECT)",
                                      "wrong_issuer")
            kind = CallerKind.SERVICE.value
            expires = jwt.claims.get("exp")
            service = await self._review(self.accounts, token, audience,
                                         expires if isinstance(expires, int) else None)
            return Caller(CallerKind.SERVICE, service.username)
        except Refused:
            raise
        except ApiError as exc:
            raise Refused(exc, kind) from exc

    async def _review(self, accounts: ServiceAccounts, token: str, audience: Audience,
                      expires: int | None) -> ServiceCaller:
        key = hashlib.sha256(
            f"{audience.namespace}/{audience.name}\n{token}".encode()).digest()
        known = self.reviews.get(key)
        if known is None:
            pending = self._reviewing.get(key)
            if pending is None:
                pending = asyncio.ensure_future(self._ask(accounts, token, audience, key,
                                                          expires))
                self._reviewing[key] = pending
                pending.add_done_callback(lambda done: self._forget(key, done))
            known = await asyncio.shield(pending)
        if isinstance(known, ApiError):
            raise known.copy()
        return known

    def _forget(self, key: bytes, done: asyncio.Future[Review]) -> None:
        self._reviewing.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved even if every waiter was cancelled

    async def _ask(self, accounts: ServiceAccounts, token: str, audience: Audience,
                   key: bytes, expires: int | None) -> Review:
        """The review's outcome; only a definite one (an answer of the API server) is
        remembered, an outage is not."""
        try:
            outcome: Review = await self.outbound.run(
                lambda: accounts.authorize(token, audience.namespace, audience.name))
        except ApiError as exc:
            if exc.status not in (401, 403):
                raise
            outcome = exc.copy()
        lifetime = REVIEW_TTL if expires is None else min(REVIEW_TTL, expires - time.time())
        if lifetime > 0:
            self.reviews.put(key, outcome, lifetime)
        return outcome


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthenticated("no credentials: send Authorization: Bearer <token>",
                              "no_credentials")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("expected Authorization: Bearer <token>", "no_credentials")
    return token.strip()
