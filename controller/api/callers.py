"""Who is calling: an end user (a Firebase ID token, owner-only) or a service in the cluster
(a ServiceAccount token, any project of its reconciler). The token's unverified issuer only
chooses which check to run; each check verifies the token in full."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from google.auth import jwt

from controller.api.errors import unauthenticated
from controller.api.firebase import FirebaseTokens, is_firebase_issuer
from controller.api.service_accounts import ServiceAccounts


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


class Callers:
    def __init__(self, firebase: FirebaseTokens, accounts: ServiceAccounts | None) -> None:
        self.firebase = firebase
        self.accounts = accounts

    def identify(self, authorization: str | None, audience: Audience) -> Caller:
        """Raises ApiError (401, 403, 503) unless the credentials are good."""
        token = bearer_token(authorization)
        try:
            claims = jwt.decode(token, verify=False)
        except (ValueError, TypeError) as exc:
            raise unauthenticated("the bearer token is not a JWT") from exc
        if is_firebase_issuer(claims.get("iss")):
            return Caller(CallerKind.USER, self.firebase.uid(token, audience.firebase_project))
        if self.accounts is None:
            raise unauthenticated("expected a Firebase ID token (issuer "
                                  "https://securetoken.google.com/PROJECT)")
        service = self.accounts.authorize(token, audience.namespace, audience.name)
        return Caller(CallerKind.SERVICE, service.username)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthenticated("no credentials: send Authorization: Bearer <token>")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("expected Authorization: Bearer <token>")
    return token.strip()
