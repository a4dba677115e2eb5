"""A bearer token taken apart without trusting it: three base64url parts, a JSON object in
each of the first two. Whatever a caller sends, the outcome is a `Jwt` or a 401: a token too
long, nested too deep, with duplicate keys, NaN or bad base64 is refused here, before any
key is looked up or any other service is asked, and before PyJWT parses it (its JSON parser
takes NaN and the last of duplicate keys, and recurses as deep as the text nests)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from reel_reconciler.api.errors import ApiError, unauthenticated

MAX_TOKEN_CHARS = 8192
"""Firebase ID tokens are about 1 KB (custom claims add at most 1,000 bytes), ServiceAccount
tokens about the same: four times that is no token of ours."""
MAX_NESTING = 16
"""Deeper JSON than any token of ours holds; refused before the parser recurses."""
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Jwt:
    token: str
    """The compact form as sent, for PyJWT to verify."""
    header: dict[str, Any]
    claims: dict[str, Any]
    signature: bytes

    @property
    def signing_input(self) -> bytes:
        """`HEADER.PAYLOAD` as sent: what the signature covers."""
        return self.token.rpartition(".")[0].encode("ascii")


def parse_jwt(token: str) -> Jwt:
    """The token's parts, unverified; raises ApiError 401 unless it is a well-formed JWS in
    compact form."""
    if len(token) > MAX_TOKEN_CHARS:
        raise malformed(f"the token is longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise malformed("the token is not a JWT (three dot-separated parts)")
    header_b64, payload_b64, signature_b64 = parts
    header = _json_object(_unbase64(header_b64, "header"), "header")
    claims = _json_object(_unbase64(payload_b64, "payload"), "payload")
    signature = _unbase64(signature_b64, "signature")
    return Jwt(token, header, claims, signature)


def malformed(message: str) -> ApiError:
    return unauthenticated(message, "malformed_token")


def _unbase64(part: str, what: str) -> bytes:
    if not _BASE64URL.fullmatch(part) or len(part) % 4 == 1:
        raise malformed(f"the token's {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise malformed(f"the token's {what} is not base64url") from exc


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise malformed(f"the token's {what} is not UTF-8") from exc
    value = strict_json(text)
    if value is None or not isinstance(value, dict):
        raise malformed(f"the token's {what} is not a JSON object")
    return value


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Two values for one claim: which one a verifier reads is a guess; refuse both."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate("duplicate key")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str, max_nesting: int = MAX_NESTING) -> Any | None:
    """The JSON value of `text`, or None when it is not strict JSON (NaN, Infinity, duplicate
    keys) or nests deeper than `max_nesting`: the depth is counted first, so that no input
    makes the parser recurse until Python gives up."""
    if nesting(text) > max_nesting:
        return None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None


def nesting(text: str) -> int:
    """How deep the brackets of a JSON text go, strings skipped: linear, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
