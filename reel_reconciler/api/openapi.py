"""The endpoint described for clients (`GET /openapi.json`); the report's schema is the
model's own, so the description cannot drift from what is sent."""

from __future__ import annotations

from typing import Any

from reel_reconciler import __version__
from reel_reconciler.model import Report

RECONCILE_PATH = "/api/reel/projects/{projectId}/reconcile"
PROJECT_ID_PATTERN = r"^(?!\.\.?$)(?!__[^/]*__$)[^/\x00-\x1f\x7f-\x9f]+$"
"""A Firestore document id: no slash, not . or .., not __reserved__; and no control
character. The same text in the description (ECMA-262) and the check (Python)."""

_ERROR = {
    "type": "object", "required": ["success", "error"],
    "properties": {
        "success": {"const": False},
        "error": {"type": "object", "required": ["code", "message"],
                  "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
    },
}
_ANSWERS = {
    "400": "malformed project id or body (the body is optional: empty or a JSON object)",
    "401": "no valid credentials (why is logged, not told)",
    "403": "a service account without update on reelreconcilers/reconcile",
    "404": "no such project, or another user's (the two are not told apart); an id over "
           "1,500 bytes of UTF-8 names none",
    "405": "only POST",
    "413": "the body is too large",
    "429": "past the caller's rate limit, or the client address's limit for requests "
           "without valid credentials; see Retry-After",
    "503": "Firestore, GCS, the token keys or the Kubernetes API server are unreachable; "
           "nothing was written; see Retry-After",
}


def document() -> dict[str, Any]:
    report = Report.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    definitions = report.pop("$defs", {})
    error = {"description": "", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}
    responses: dict[str, Any] = {
        "200": {"description": "the project was reconciled (a live job gives action "
                "skipped with its reason)",
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["success", "report"],
                    "properties": {"success": {"const": True},
                                   "report": {"$ref": "#/components/schemas/Report"}}}}}},
    }
    for code, text in _ANSWERS.items():
        responses[code] = {**error, "description": text}
    return {
        "openapi": "3.1.0",
        "info": {"title": "reel-reconciler", "version": __version__,
                 "description": "Reconcile one Reel Maker project against the clips in GCS."},
        "paths": {RECONCILE_PATH: {"post": {
            "operationId": "reconcileProject",
            "summary": "Reconcile one project now",
            "parameters": [{"name": "projectId", "in": "path", "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 1500,
                                       "pattern": PROJECT_ID_PATTERN}}],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"type": "object"}}}},
            "security": [{"firebase": []}, {"serviceAccount": []}],
            "responses": responses,
        }}},
        "components": {
            "schemas": {"Report": report, "Error": _ERROR, **definitions},
            "securitySchemes": {
                "firebase": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                             "description": "a Firebase ID token: its user's projects only"},
                "serviceAccount": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                   "description": "a Kubernetes ServiceAccount token allowed "
                                   "update on reelreconcilers/reconcile"},
            },
        },
    }
