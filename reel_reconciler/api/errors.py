"""Every answer but a report is `{"success": false, "error": {"code", "message"}}`, with the
status code a client acts on (refresh its token, back off, give up). A refusal carries two
texts: the message for a caller already identified, and a `reason` (a short word) for the
log and the metric; before a caller is identified, the answer says no more than its code."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

_ANONYMOUS_MESSAGES = {
    "unauthenticated": "no valid credentials",
    "rate_limited": "too many requests from this address: retry later",
    "unavailable": "the endpoint is not available: retry later",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None,
                 headers: Mapping[str, str] | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        self.reason = reason or code
        """Why, in a word: what the refused-login log line and metric say."""

    def copy(self) -> ApiError:
        """The same refusal, fresh: a remembered error is raised as a copy, so that its
        traceback does not grow with every request that gets it."""
        return ApiError(self.status, self.code, self.message, self.retry_after, self.headers,
                        self.reason)

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.retry_after,
                              self.headers)

    def anonymous(self) -> web.Response:
        """The answer to a caller not identified: the code and a fixed text, so that no
        name, address, project or error of a dependency is told before login."""
        message = _ANONYMOUS_MESSAGES.get(self.code, "the request failed")
        if self.code == "rate_limited" and self.retry_after is not None:
            message = ("too many requests from this address: retry in "
                       f"{max(1, round(self.retry_after))}s")
        return error_response(self.status, self.code, message, self.retry_after,
                              self.headers)


def unauthenticated(message: str, reason: str) -> ApiError:
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"},
                    reason=reason)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message, reason="forbidden")


def unavailable(message: str, retry_after: float, reason: str = "unavailable") -> ApiError:
    return ApiError(503, "unavailable", message, retry_after, reason=reason)


def error_response(status: int, code: str, message: str, retry_after: float | None = None,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(max(1, round(retry_after)))
    body = {"success": False, "error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=all_headers)
