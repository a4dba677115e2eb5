"""/metrics for Prometheus, /readyz and /livez for Kubernetes, on one port (the operator's
Kopf /healthz runs the same liveness check)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from reel_reconciler.runtime.liveness import stalled
from reel_reconciler.runtime.registry import RUNTIMES

Handler = Callable[[web.Request], Awaitable[web.Response]]


async def _metrics(_: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(REGISTRY))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


def _readyz(expected: int) -> Handler:
    """Ready when at least `expected` reconcilers run (a process started for one is not
    ready before it has started it) and each has live listeners and a recent sweep."""

    async def readyz(_: web.Request) -> web.Response:
        runtimes = list(RUNTIMES.values())
        not_ready = {rt.key: {"listenersHealthy": rt.healthy, "lastSweepAt": rt.last_sweep_at}
                     for rt in runtimes if not rt.ready()}
        ready = not not_ready and len(runtimes) >= expected
        body = json.dumps({"ready": ready, "reconcilers": len(runtimes),
                           "expected": expected, "notReady": not_ready})
        return web.Response(status=200 if ready else 503, text=body,
                            content_type="application/json")

    return readyz


async def _livez(_: web.Request) -> web.Response:
    """503 when a watchdog timer or a supervisor has stopped turning: restart the process."""
    hung = stalled()
    return web.Response(status=503 if hung else 200, content_type="application/json",
                        text=json.dumps({"alive": not hung, "stalled": hung}))


def _ready_when(check: Callable[[], bool]) -> Handler:
    """/readyz of a process without reconcilers of its own (a sweep worker)."""

    async def readyz(_: web.Request) -> web.Response:
        ready = check()
        return web.Response(status=200 if ready else 503, content_type="application/json",
                            text=json.dumps({"ready": ready}))

    return readyz


async def start_server(port: int, host: str = "0.0.0.0", expected: int = 0,
                       ready: Callable[[], bool] | None = None) -> web.AppRunner:
    """`expected`: reconcilers that must run before /readyz says ready (the operator runs
    as many as there are resources, zero included); `ready`, if given, decides instead."""
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/readyz", _readyz(expected) if ready is None else _ready_when(ready))
    app.router.add_get("/livez", _livez)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
