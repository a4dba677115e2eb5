"""End users: Firebase ID tokens, checked as Firebase documents them and no more leniently:
RS256 only, signed by the published key its `kid` names (the signature verified by PyJWT),
`aud` the project (one string), `iss` exactly `https://securetoken.google.com/PROJECT`,
`exp` not past, `iat` and `auth_time` not in the future, `sub` 1-128 characters.

The Firebase Auth emulator signs nothing. Its unsigned tokens are honoured only when the
endpoint was started for the emulator (FIREBASE_AUTH_EMULATOR_HOST, read once at start) and
for a demo project (`demo-...`, which exists nowhere but in emulators; `settings` refuses to
start otherwise); every claim is checked all the same."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import jwt

from reel_reconciler.api.errors import ApiError, unauthenticated, unavailable
from reel_reconciler.api.keys import KeysUnavailable, PublishedKeys
from reel_reconciler.api.tokens import Jwt

ISSUER_PREFIX = "https://securetoken.google.com/"
CLOCK_SKEW_SECONDS = 10
KEYS_RETRY_AFTER = 10.0
MAX_UID_LENGTH = 128
ALGORITHM = "RS256"
_JWS = jwt.PyJWS()


def is_firebase_issuer(issuer: object) -> bool:
    return isinstance(issuer, str) and issuer.startswith(ISSUER_PREFIX)


class FirebaseTokens:
    def __init__(self, keys: PublishedKeys, unsigned: bool = False) -> None:
        self.keys = keys
        self.unsigned = unsigned
        """Accept the Auth emulator's unsigned tokens (alg none): a demo project only."""

    async def uid(self, token: Jwt, project: str) -> str:
        """The user the token was issued to; raises ApiError: 401, or 503 when the keys
        cannot be fetched."""
        await self._check_signature(token)
        return check_claims(token.claims, project, time.time())

    async def _check_signature(self, token: Jwt) -> None:
        header = token.header
        algorithm = header.get("alg")
        if "crit" in header:
            raise refused("the token has critical header extensions", "malformed_token")
        if header.get("typ", "JWT") != "JWT":
            raise refused("the token's typ is not JWT", "malformed_token")
        if algorithm == "none" and self.unsigned:
            if token.signature:
                raise refused("an unsigned token carries a signature", "malformed_token")
            return
        if algorithm != ALGORITHM:
            raise refused(f"the token's algorithm is {str(algorithm)[:16]!r}, not "
                          f"{ALGORITHM}", "wrong_algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise refused("the token names no key (kid)", "unknown_key")
        try:
            key = await self.keys.key(kid)
        except KeysUnavailable as exc:
            raise unavailable(f"the Firebase token keys cannot be fetched: {exc}",
                              KEYS_RETRY_AFTER, "keys_unavailable") from exc
        if key is None:
            raise refused("the token's key is not one of the published keys", "unknown_key")
        try:
            _JWS.decode(token.token, key, algorithms=[ALGORITHM])
        except jwt.InvalidSignatureError as exc:
            raise refused("the token's signature is not valid", "bad_signature") from exc
        except jwt.PyJWTError as exc:
            raise refused(f"PyJWT refused it ({type(exc).__name__})", "malformed_token") from exc


def check_claims(claims: Mapping[str, Any], project: str, now: float,
                 skew: float = CLOCK_SKEW_SECONDS) -> str:
    """The token's user when its claims are those of a live Firebase ID token for
    `project`; raises ApiError 401 naming the first claim that is not."""
    issuer = ISSUER_PREFIX + project
    if claims.get("iss") != issuer:
        raise refused(f"the issuer is not {issuer}", "wrong_issuer")
    audience = claims.get("aud")
    if not isinstance(audience, str) or audience != project:
        raise refused(f"the audience is not {project!r} (one string)", "wrong_audience")
    expires = _time(claims, "exp", required=True)
    if expires is None or expires <= now - skew:
        raise refused("the token has expired", "expired")
    for name in ("iat", "auth_time"):
        at = _time(claims, name, required=True)
        if at is None or at > now + skew:
            raise refused(f"{name} is in the future", "not_yet_valid")
    not_before = _time(claims, "nbf", required=False)
    if not_before is not None and not_before > now + skew:
        raise refused("nbf is in the future", "not_yet_valid")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_UID_LENGTH:
        raise refused("the subject (sub) is not 1-128 characters", "invalid_claims")
    return subject


def _time(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    """A NumericDate claim; raises 401 when it is there but not a finite number, or
    missing but required."""
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if math.isfinite(seconds):
            return seconds
    raise refused(f"{name} is not a time in seconds", "invalid_claims")


def refused(message: str, reason: str) -> ApiError:
    return unauthenticated(f"invalid Firebase ID token: {message}", reason)
