"""`POST /api/reel/projects/{projectId}/reconcile`: the seed's contract on a port of its own.

Checks run cheapest first and each ends the request with its JSON error. Before anything is
verified, the client's address is charged one request of its failed-login limit (given
back once a caller is identified), so a flood of bad tokens costs at most that many
verifications per address; until the caller is identified, an error says only its code
(unauthenticated, rate_limited, unavailable) and the details go to the log, one line per
refused login. Then the caller's own rate, the id, the body, and whether the project exists
and is the caller's to see. Only then does the engine run, as a forced trigger under the
policy's hands-off rules."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp_cors
from aiohttp import web

from reel_reconciler import metrics
from reel_reconciler.api.callers import Audience, Caller, CallerKind, Callers, Refused
from reel_reconciler.api.errors import ApiError, error_response, unavailable
from reel_reconciler.api.firebase import FirebaseTokens
from reel_reconciler.api.keys import PublishedKeys
from reel_reconciler.api.openapi import RECONCILE_PATH, document
from reel_reconciler.api.outbound import Outbound
from reel_reconciler.api.peers import client_address, limit_key
from reel_reconciler.api.rate import Rate, RateLimit
from reel_reconciler.api.request import (
    MAX_BODY,
    MAX_REQUEST_LINE,
    checked_body,
    checked_id,
)
from reel_reconciler.api.service_accounts import ServiceAccounts
from reel_reconciler.api.settings import EMULATOR_ENV, ApiSettings
from reel_reconciler.config import ConfigError
from reel_reconciler.model import Action, ReconcilerId, Report, Trigger
from reel_reconciler.runtime import RUNTIMES, ReconcilerRuntime
from reel_reconciler.stores import Outage, StoreError
from reel_reconciler.usage import port_problem

log = logging.getLogger(__name__)

OUTAGE_RETRY_AFTER = 30.0
"""Seconds a caller waits after an outage: the stores' own retries have already given up."""
SERVER = "reel-reconciler"
"""The Server header: no versions of Python or aiohttp to look vulnerabilities up by."""


@dataclass
class Labels:
    """What an answer is counted by, learnt as the request goes through its checks."""

    reconciler: ReconcilerId | None = None
    """None until the request reached a reconciler (counted as `none`)."""
    caller: str = "unknown"
    identified: bool = False

    @property
    def label(self) -> str:
        return "none" if self.reconciler is None else self.reconciler.label

    def count(self, response: web.StreamResponse) -> web.StreamResponse:
        metrics.API_REQUESTS_TOTAL.labels(self.label, self.caller,
                                          str(response.status)).inc()
        return response


Runtimes = Callable[[], Mapping[str, ReconcilerRuntime]]


class ReconcileEndpoint:
    def __init__(self, settings: ApiSettings, accounts: ServiceAccounts | None,
                 runtimes: Runtimes = lambda: RUNTIMES) -> None:
        self.settings = settings
        self.outbound = Outbound()
        self.keys = PublishedKeys(settings.firebase_certs_url, self.outbound.run)
        firebase = FirebaseTokens(self.keys, unsigned=settings.auth_emulator is not None)
        self.callers = Callers(firebase, accounts, self.outbound)
        self.runtimes = runtimes
        rate = Rate.of(settings.rate())
        self.per_caller = RateLimit(rate)
        self.per_address = RateLimit(rate)
        """Requests without a valid caller per client address: each may cost a
        verification (a TokenReview, a key fetch)."""

    def served(self) -> tuple[str, ReconcilerRuntime]:
        """The reconciler this endpoint serves, as NAMESPACE/NAME and its runtime."""
        runtimes = self.runtimes()
        chosen = self.settings.reconciler
        if chosen is not None:
            runtime = runtimes.get(chosen)
            if runtime is None:
                raise unavailable(f"the ReelReconciler {chosen} is not running here",
                                  OUTAGE_RETRY_AFTER)
            return chosen, runtime
        if len(runtimes) == 1:
            return next(iter(runtimes.items()))
        if not runtimes:
            raise unavailable("no reconciler is running yet", OUTAGE_RETRY_AFTER)
        raise ApiError(500, "misconfigured", "several ReelReconcilers run here: choose "
                       "the one to serve with --api-reconciler NAMESPACE/NAME")

    def audience(self, key: str, runtime: ReconcilerRuntime) -> Audience:
        engine = runtime.engine
        if engine is None:
            raise unavailable("the reconciler is starting", OUTAGE_RETRY_AFTER)
        project = self.settings.firebase_project or engine.firestore.connection.project
        namespace, _, name = key.partition("/")
        return Audience(project, namespace, name)

    async def reconcile(self, request: web.Request) -> web.StreamResponse:
        """Every answer JSON, and counted; before the caller is identified, anonymous."""
        labels = Labels()
        try:
            response: web.StreamResponse = await self._reconcile(request, labels)
        except ApiError as exc:
            if labels.identified:
                response = exc.response()
            else:
                if exc.status >= 500:
                    log.warning("reconcile endpoint unavailable", extra={
                        "status": exc.status, "reason": exc.reason, "detail": exc.message})
                response = exc.anonymous()
        except web.HTTPException as exc:  # a body over the size limit
            response = http_error(exc)
        return labels.count(response)

    async def _reconcile(self, request: web.Request, labels: Labels) -> web.Response:
        key, runtime = self.served()
        labels.reconciler = runtime.reconciler
        audience = self.audience(key, runtime)
        caller = await self._login(request, audience, labels)
        labels.identified = True
        labels.caller = caller.kind.value
        self.per_caller.check(caller.key)
        project_id = checked_id(request.match_info["project_id"])
        await checked_body(request)
        report = await asyncio.to_thread(_reconcile_visible, runtime, project_id, caller)
        log.info("reconcile requested", extra={
            "reconciler": runtime.key, "projectId": project_id, "caller": caller.id,
            "callerKind": caller.kind.value, "action": report.action.value,
            "reason": report.reason})
        if report.unreachable:
            raise unavailable(f"nothing was written: {report.error}", OUTAGE_RETRY_AFTER)
        if report.action is Action.ERROR:
            raise ApiError(500, "reconcile_failed", report.error or "the reconcile failed")
        return web.json_response({"success": True, "report": report.as_json()})

    async def _login(self, request: web.Request, audience: Audience,
                     labels: Labels) -> Caller:
        """The caller, verified; the client's address is charged before any verification
        and given back only when a caller is identified. Each refusal is logged once."""
        address = client_address(request.remote, request.headers.getall("X-Forwarded-For", ()),
                                 self.settings.trusted_proxies)
        charged = f"address:{limit_key(address)}"
        kind = "unknown"
        try:
            self.per_address.check(charged, "this address without valid credentials")
            try:
                caller = await self.callers.identify(request.headers.get("Authorization"),
                                                     audience)
            except Refused as exc:
                kind = exc.kind
                raise
        except ApiError as exc:
            if exc.status == 403:  # authenticated by the API server, not authorized
                labels.caller = CallerKind.SERVICE.value
            metrics.API_REFUSED_LOGINS_TOTAL.labels(labels.label, kind, exc.reason).inc()
            log.warning("login refused", extra={
                "address": address, "reason": exc.reason, "callerKind": kind,
                "status": exc.status, "detail": exc.message})
            if exc.status == 403:
                labels.identified = True  # the API server told us who it is
            raise
        self.per_address.refund(charged)
        return caller


def _reconcile_visible(runtime: ReconcilerRuntime, project_id: str, caller: Caller) -> Report:
    """404 alike for a missing project and another user's (existence is not told); else the
    document read for that check is the one reconciled: one read, not two."""
    engine = runtime.engine
    assert engine is not None
    try:
        found = engine.firestore.get_projects([project_id])
    except Outage as exc:
        raise unavailable(f"Firestore is unreachable: {exc}", OUTAGE_RETRY_AFTER) from exc
    except StoreError as exc:
        raise ApiError(500, "reconcile_failed", f"the project cannot be read: {exc}") from exc
    document = found.get(project_id)
    owner = (document.data or {}).get("userId") if document is not None else None
    if document is None or (caller.kind is CallerKind.USER and owner != caller.id):
        raise ApiError(404, "not_found", f"no project {project_id!r}")
    (report,) = engine.reconcile_read([(project_id, document, None)], Trigger.API,
                                      runtime.spec.observe)
    return report


_HTTP_CODES = {404: "no_route", 405: "method_not_allowed", 413: "body_too_large"}


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    """What the handlers do not answer themselves (no such route, a wrong method, a
    failure of ours) is JSON too, and counted."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return Labels().count(http_error(exc))
    except Exception:
        log.exception("reconcile endpoint failed", extra={"path": request.path})
        return Labels().count(error_response(500, "internal",
                                             "internal error; see the reconciler's log"))


def http_error(exc: web.HTTPException) -> web.Response:
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason,
                          headers=headers)


async def _openapi(_: web.Request) -> web.Response:
    return web.json_response(document())


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer: no versions in Server, no content sniffing; nothing but the
    description cached (a report carries a user's project)."""
    response.headers["Server"] = SERVER
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.path != "/openapi.json":
        response.headers["Cache-Control"] = "no-store"


def application(endpoint: ReconcileEndpoint) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY,
                          handler_args={"max_line_size": MAX_REQUEST_LINE})
    app.on_response_prepare.append(_headers)

    async def close(_: web.Application) -> None:
        endpoint.outbound.close()

    app.on_cleanup.append(close)
    route = app.router.add_post(RECONCILE_PATH.replace("{projectId}", "{project_id}"),
                                endpoint.reconcile)
    app.router.add_get("/openapi.json", _openapi)
    origins = endpoint.settings.cors_origins
    if origins:
        options = aiohttp_cors.ResourceOptions(
            allow_headers=("Authorization", "Content-Type"), expose_headers=("Retry-After",),
            allow_methods=("POST",), max_age=600)
        cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
        cors.add(route)
    return app


async def start_api(settings: ApiSettings, accounts: ServiceAccounts | None,
                    runtimes: Runtimes = lambda: RUNTIMES) -> web.AppRunner:
    """Serve the endpoint; raises ConfigError when its port cannot be had."""
    if settings.auth_emulator is not None:
        log.warning(f"{EMULATOR_ENV} is set: unsigned tokens of the demo project are "
                    "accepted (the Auth emulator signs none)",
                    extra={"firebaseProject": settings.firebase_project})
    runner = web.AppRunner(application(ReconcileEndpoint(settings, accounts, runtimes)),
                           access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(port_problem(settings.port, "--api-port", exc)) from exc
    log.info("reconcile endpoint listening", extra={
        "port": settings.port, "serviceAccounts": accounts is not None,
        "corsOrigins": list(settings.cors_origins), "rateLimit": settings.rate_limit,
        "trustedProxies": [str(network) for network in settings.trusted_proxies]})
    return runner
