"""What a reconcile request may carry: a project id as Firestore spells document ids, and an
optional body that is a small JSON object; anything else is a 400 with its JSON error."""

from __future__ import annotations

import re

from aiohttp import web

from reel_reconciler.api.errors import ApiError
from reel_reconciler.api.openapi import PROJECT_ID_PATTERN
from reel_reconciler.api.tokens import strict_json

MAX_BODY = 16 * 1024
MAX_BODY_NESTING = 32
MAX_ID_BYTES = 1500
MAX_REQUEST_LINE = 20 * 1024
"""Room for any id the description allows (1,500 characters, each up to 4 bytes of UTF-8,
each byte percent-encoded: 18,000) to reach the id check and get its JSON 400."""


def checked_id(project_id: str) -> str:
    """A Firestore document id as the description spells it (1-1500 characters, no slash
    or control character, not . or .., not __reserved__), else 400. Firestore also wants
    at most 1,500 bytes of UTF-8, which a JSON schema cannot say: a longer id names no
    project, and is answered as one (404)."""
    if len(project_id) > MAX_ID_BYTES or not re.match(PROJECT_ID_PATTERN, project_id):
        raise ApiError(400, "invalid_project_id",
                       f"{project_id[:80]!r} is not a project id (a Firestore document id)")
    try:
        size = len(project_id.encode())
    except UnicodeEncodeError as exc:
        raise ApiError(400, "invalid_project_id", "the project id is not UTF-8") from exc
    if size > MAX_ID_BYTES:
        raise ApiError(404, "not_found", f"no project {project_id[:80]!r}")
    return project_id


async def checked_body(request: web.Request) -> None:
    """The body is optional; when sent, it is a JSON object (its keys are ignored), strict
    JSON nested at most 32 deep."""
    body = await request.read()
    if not body.strip():
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_body", "the body is not UTF-8") from exc
    value = strict_json(text, MAX_BODY_NESTING)
    if value is None:
        raise ApiError(400, "invalid_body", "the body is not JSON (strict, nested at most "
                       f"{MAX_BODY_NESTING} deep)")
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object, or empty")
