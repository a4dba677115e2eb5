"""The public keys that sign Firebase ID tokens, fetched from the certs URL and kept as long
as its Cache-Control allows. Google publishes them two ways, both understood: a JSON map of
key id to X.509 certificate (loaded with cryptography), and a JWK set (loaded with PyJWT).
Our own fetch rather than PyJWT's JWK client: it reads JWK sets only, and not with our
timeouts, size cap and threads. One fetch at a time (callers waiting for the
same keys share it), with a timeout, on the endpoint's own threads; an unknown key id
refetches at most once a minute, so forged key ids cannot make the reconciler hammer the
URL."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

FETCH_TIMEOUT = (3.0, 5.0)
"""Seconds to connect, then between bytes."""
MAX_DOCUMENT_BYTES = 1 << 20
DEFAULT_MAX_AGE = 3600.0
MIN_MAX_AGE, MAX_MAX_AGE = 60.0, 86400.0
REFETCH_UNKNOWN_AFTER = 60.0
"""An unknown key id refetches the keys no more often than this."""
FAILED_FETCH_BACKOFF = 5.0
"""After a failed fetch, callers are told `unavailable` this long without a new attempt."""
MIN_RSA_BITS = 2048

Keys = Mapping[str, rsa.RSAPublicKey]
Run = Callable[[Callable[[], "Fetched"]], Awaitable["Fetched"]]


class KeysUnavailable(Exception):
    """The keys cannot be had now: the token cannot be checked (503, not 401)."""


@dataclass(frozen=True)
class Fetched:
    keys: dict[str, rsa.RSAPublicKey]
    max_age: float


class PublishedKeys:
    def __init__(self, url: str, run: Run) -> None:
        self.url = url
        self._run = run
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetched_at = -1e18
        self._expires_at = -1e18
        self._failed_at = -1e18
        self._fetching: asyncio.Future[None] | None = None
        self.fetches = 0

    async def key(self, kid: str) -> rsa.RSAPublicKey | None:
        """The key of that id, None if the publisher has none; raises KeysUnavailable."""
        now = time.monotonic()
        stale = now >= self._expires_at
        unknown = kid not in self._keys and now - self._fetched_at >= REFETCH_UNKNOWN_AFTER
        if stale or unknown:
            await self._refresh(must=not self._keys)
        return self._keys.get(kid)

    async def _refresh(self, must: bool) -> None:
        """One fetch for every caller waiting; a failure keeps the keys we had (they stay
        valid past their cache time), and only without any is it the caller's 503."""
        if time.monotonic() - self._failed_at < FAILED_FETCH_BACKOFF:
            if must:
                raise KeysUnavailable("the last fetch of the token keys failed")
            return
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
            # Retrieved even if every waiter is cancelled: no "never retrieved" warning.
            self._fetching.add_done_callback(
                lambda done: done.cancelled() or done.exception())
        fetching = self._fetching
        try:
            await asyncio.shield(fetching)
        except KeysUnavailable:
            if must or not self._keys:
                raise

    async def _fetch(self) -> None:
        try:
            fetched = await self._run(lambda: fetch_keys(self.url))
        except KeysUnavailable as exc:
            self._failed_at = time.monotonic()
            log.warning("the token keys cannot be fetched", extra={
                "url": self.url, "error": str(exc), "keptKeys": len(self._keys)})
            raise
        finally:
            self._fetching = None
        now = time.monotonic()
        self.fetches += 1
        self._keys = fetched.keys
        self._fetched_at = now
        self._expires_at = now + fetched.max_age


def fetch_keys(url: str) -> Fetched:
    """GET the certs URL (blocking: run it on the endpoint's threads); raises
    KeysUnavailable on any failure, the document's own included."""
    try:
        with requests.get(url, timeout=FETCH_TIMEOUT, stream=True,
                          headers={"Accept": "application/json"}) as answer:
            if answer.status_code != 200:
                raise KeysUnavailable(f"{url} answered HTTP {answer.status_code}")
            body = answer.raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
            cache_control = answer.headers.get("Cache-Control", "")
    except requests.RequestException as exc:
        raise KeysUnavailable(f"{url}: {type(exc).__name__}") from exc
    except OSError as exc:
        raise KeysUnavailable(f"{url}: {exc}") from exc
    if len(body) > MAX_DOCUMENT_BYTES:
        raise KeysUnavailable(f"{url} sent more than {MAX_DOCUMENT_BYTES} bytes")
    return Fetched(parse_keys(body), max_age(cache_control))


def max_age(cache_control: str) -> float:
    found = re.search(r"(?:^|[,\s])max-age\s*=\s*(\d{1,9})", cache_control)
    seconds = float(found.group(1)) if found else DEFAULT_MAX_AGE
    return min(max(seconds, MIN_MAX_AGE), MAX_MAX_AGE)


def parse_keys(body: bytes) -> dict[str, rsa.RSAPublicKey]:
    """RSA keys by id from either document; raises KeysUnavailable when there are none."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise KeysUnavailable("the keys document is not JSON") from exc
    if not isinstance(document, dict):
        raise KeysUnavailable("the keys document is not a JSON object")
    if "keys" in document:
        keys = _from_jwks(document["keys"])
    else:
        keys = {kid: key for kid, pem in document.items()
                if isinstance(pem, str) and (key := _from_pem(pem)) is not None}
    if not keys:
        raise KeysUnavailable("the keys document holds no RSA signing key")
    return keys


def _from_pem(pem: str) -> rsa.RSAPublicKey | None:
    data = pem.encode()
    try:
        key: Any = (x509.load_pem_x509_certificate(data).public_key()
                    if b"CERTIFICATE" in data else serialization.load_pem_public_key(data))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return _strong(key)


def _from_jwks(entries: object) -> dict[str, rsa.RSAPublicKey]:
    keys: dict[str, rsa.RSAPublicKey] = {}
    if not isinstance(entries, list):
        return keys
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        kid = entry.get("kid")
        if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
            continue
        if not isinstance(kid, str) or not kid or "d" in entry:
            continue
        try:
            key = _strong(jwt.PyJWK(entry, "RS256").key)
        except jwt.PyJWTError:
            continue
        if key is not None:
            keys[kid] = key
    return keys


def _strong(key: object) -> rsa.RSAPublicKey | None:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS:
        return key
    return None
