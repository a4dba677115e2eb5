"""Every answer but a report is `{"success": false, "error": {"code", "message"}}`, with the
status code a client acts on (refresh its token, back off, give up)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.retry_after,
                              self.headers)


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def unavailable(message: str, retry_after: float) -> ApiError:
    return ApiError(503, "unavailable", message, retry_after)


def error_response(status: int, code: str, message: str, retry_after: float | None = None,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(max(1, round(retry_after)))
    body = {"success": False, "error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=all_headers)
