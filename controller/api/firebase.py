"""End users: Firebase ID tokens, checked as the Firebase Admin SDK checks them (an RS256
signature by one of the published keys, audience = the Firebase project, issuer, expiry,
subject). With FIREBASE_AUTH_EMULATOR_HOST set, the Admin SDK itself verifies them: the
emulator signs nothing, so only a development setup may set it."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import cachecontrol
import firebase_admin
import google.auth.exceptions
import google.auth.transport.requests
import requests
from firebase_admin import auth
from google.oauth2 import id_token

from controller.api.errors import unauthenticated, unavailable

ISSUER_PREFIX = "https://securetoken.google.com/"
EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"
CLOCK_SKEW_SECONDS = 10
KEYS_RETRY_AFTER = 10.0
MAX_UID_LENGTH = 128


def is_firebase_issuer(issuer: object) -> bool:
    return isinstance(issuer, str) and issuer.startswith(ISSUER_PREFIX)


def emulated() -> bool:
    return bool(os.environ.get(EMULATOR_ENV))


class FirebaseTokens:
    """Verifies tokens for any Firebase project; the keys are fetched once and kept as long
    as their Cache-Control allows (Google rotates them daily)."""

    def __init__(self, certs_url: str) -> None:
        self.certs_url = certs_url
        session = cachecontrol.CacheControl(requests.Session())
        self._request = google.auth.transport.requests.Request(session=session)
        self._apps: dict[str, firebase_admin.App] = {}
        self._lock = threading.Lock()

    def uid(self, token: str, project: str) -> str:
        """The user the token was issued to; raises ApiError: 401, or 503 when the keys
        cannot be fetched."""
        claims = self._emulated(token, project) if emulated() else self._signed(token, project)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_UID_LENGTH:
            raise unauthenticated("the Firebase ID token has no valid subject (sub)")
        return subject

    def _signed(self, token: str, project: str) -> Mapping[str, Any]:
        try:
            claims = id_token.verify_token(token, self._request, audience=project,
                                           certs_url=self.certs_url,
                                           clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
        except google.auth.exceptions.TransportError as exc:
            raise unavailable(f"the Firebase token keys cannot be fetched: {exc}",
                              KEYS_RETRY_AFTER) from exc
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            raise unauthenticated(f"invalid Firebase ID token: {_first_sentence(exc)}") from exc
        if claims.get("iss") != ISSUER_PREFIX + project:
            raise unauthenticated(f"invalid Firebase ID token: issuer {claims.get('iss')!r} "
                                  f"is not {ISSUER_PREFIX + project!r}")
        return claims

    def _emulated(self, token: str, project: str) -> Mapping[str, Any]:
        try:
            claims: Mapping[str, Any] = auth.verify_id_token(token, app=self._app(project),
                                        clock_skew_seconds=CLOCK_SKEW_SECONDS)
            return claims
        except auth.CertificateFetchError as exc:
            raise unavailable(f"the Firebase token keys cannot be fetched: {exc}",
                              KEYS_RETRY_AFTER) from exc
        except (ValueError, firebase_admin.exceptions.FirebaseError) as exc:
            raise unauthenticated(f"invalid Firebase ID token: {_first_sentence(exc)}") from exc

    def _app(self, project: str) -> firebase_admin.App:
        """One Admin SDK app per Firebase project, named after it (apps are process-wide)."""
        with self._lock:
            app = self._apps.get(project)
            if app is None:
                name = f"reel-reconciler-{project}"
                try:
                    app = firebase_admin.get_app(name)
                except ValueError:
                    app = firebase_admin.initialize_app(options={"projectId": project},
                                                        name=name)
                self._apps[project] = app
            return app


def _first_sentence(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    head, dot, _rest = text.partition(". ")
    return head + ("." if dot else "")

