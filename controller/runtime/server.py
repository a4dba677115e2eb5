"""/metrics for Prometheus and /readyz for Kubernetes, on one port (the operator's liveness
endpoint is Kopf's own)."""

from __future__ import annotations

import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from controller.runtime.reconciler import RUNTIMES


async def _metrics(_: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(REGISTRY))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def _readyz(_: web.Request) -> web.Response:
    """Ready when every running reconciler has live listeners and a recent sweep."""
    runtimes = list(RUNTIMES.values())
    not_ready = {rt.key: {"listenersHealthy": rt.healthy, "lastSweepAt": rt.last_sweep_at}
                 for rt in runtimes if not rt.ready()}
    body = json.dumps({"ready": not not_ready, "reconcilers": len(runtimes),
                       "notReady": not_ready})
    return web.Response(status=503 if not_ready else 200, text=body,
                        content_type="application/json")


async def start_server(port: int, host: str = "0.0.0.0") -> web.AppRunner:
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/readyz", _readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
