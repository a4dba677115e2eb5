"""`reel-reconciler watch`: one reconciler, always on, without Kubernetes (a VM, Cloud Run, a
laptop against the emulators). It runs the very runtime the operator runs for a
ReelReconciler: listeners and watchdog, the work queue, the sweep and stale-job timers, and
`/metrics` with `/readyz`. SIGTERM or SIGINT drains it: timers stop, listeners close, the
reconciles in flight finish."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from kubernetes import client

from reel_reconciler import defaults
from reel_reconciler.api.app import start_api
from reel_reconciler.api.service_accounts import ServiceAccounts
from reel_reconciler.api.settings import ApiSettings
from reel_reconciler.config import ConfigError, Settings
from reel_reconciler.model import WATCH
from reel_reconciler.preflight import check_kube_config, check_ports
from reel_reconciler.runtime import ReconcilerRuntime
from reel_reconciler.runtime.server import start_server
from reel_reconciler.spec import ReconcilerSpec
from reel_reconciler.usage import port_problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchOptions:
    """What `watch` adds to the CLI's settings; the defaults are the ReelReconciler spec's."""

    mode: Literal["Enforce", "Observe"] = field(default_factory=lambda: defaults.MODE)
    sweep_interval: timedelta | None = None
    sweep_full_every: timedelta | None = None
    sweep_ranges: int = defaults.SWEEP_RANGES
    sweep_parallel: int = defaults.SWEEP_PARALLEL
    stale_interval: timedelta | None = None
    metrics_port: int = field(default_factory=lambda: defaults.METRICS_PORT)
    metrics_host: str = "0.0.0.0"
    notifications_subscription: str | None = None
    work_topic: str | None = None
    work_subscription: str | None = None
    """Both or neither: sweep rounds go through Pub/Sub and this process works on them too."""
    api: ApiSettings | None = None

    def spec(self, settings: Settings) -> ReconcilerSpec:
        """The spec a ReelReconciler with these settings would have."""
        storage: dict[str, object] = {"bucket": settings.bucket,
                                      "rootPrefix": settings.root_prefix}
        if self.notifications_subscription is not None:
            storage["notifications"] = {"subscription": self.notifications_subscription}
        body: dict[str, object] = {
            "firestore": {"project": settings.gcp_project, "database": settings.database,
                          "projectsCollection": settings.projects_collection,
                          "jobsCollection": settings.jobs_collection},
            "storage": storage,
            "mode": self.mode, "settle": settings.settle, "concurrency": settings.concurrency,
            "safety": {"maxDestructive": settings.max_destructive,
                       "window": settings.destructive_window},
            "optOutField": settings.opt_out_field,
            "flapping": {"corrections": settings.flap_corrections,
                         "window": settings.flap_window, "hold": settings.flap_hold},
        }
        stale_jobs: dict[str, object] = {"timeout": settings.stale_timeout}
        if self.stale_interval is not None:
            stale_jobs["interval"] = self.stale_interval
        body["staleJobs"] = stale_jobs
        sweep: dict[str, object] = {"ranges": self.sweep_ranges,
                                    "parallel": self.sweep_parallel}
        if self.sweep_interval is not None:
            sweep["interval"] = self.sweep_interval
        if self.sweep_full_every is not None:
            sweep["fullEvery"] = self.sweep_full_every
        if self.work_topic is not None and self.work_subscription is not None:
            sweep["distribution"] = {"topic": self.work_topic,
                                     "subscription": self.work_subscription}
        body["sweep"] = sweep
        return ReconcilerSpec.parse(body)


async def _serve(settings: Settings, options: WatchOptions) -> None:
    spec = options.spec(settings)
    ports = {"--metrics-port": options.metrics_port}
    if options.api is not None:
        ports["--api-port"] = options.api.port
    check_ports(ports)
    try:
        server = await start_server(options.metrics_port, options.metrics_host, expected=1)
    except OSError as exc:
        raise ConfigError(port_problem(options.metrics_port, "--metrics-port", exc)) from exc
    runtime = ReconcilerRuntime(WATCH, spec, settings=settings)
    runners = [server]
    api = options.api
    if api is not None:
        # Served under the ReelReconciler name service callers are authorized for, once
        # started.
        served_as = api.reconciler or runtime.key
        try:
            runners.append(await start_api(
                api, _service_accounts(api),
                lambda: {served_as: runtime} if runtime.engine is not None else {}))
        except ConfigError:
            await server.cleanup()
            raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await runtime.start()
        except ConfigError:
            await runtime.stop()
            raise
        log.info("watching", extra={
            "bucket": settings.bucket, "database": settings.database, "mode": spec.mode,
            "sweepIntervalSeconds": spec.sweep.interval.total_seconds(),
            "sweepRanges": spec.sweep.ranges, "sweepParallel": spec.sweep.parallel,
            "workTopic": options.work_topic, "workSubscription": options.work_subscription,
            "staleIntervalSeconds": spec.stale_jobs.interval.total_seconds(),
            "metricsPort": options.metrics_port})
        await stop.wait()
        log.info("stopping: draining the work in flight")
        await runtime.stop()
    finally:
        for runner in runners:
            await runner.cleanup()
    log.info("stopped")


def _service_accounts(api: ApiSettings) -> ServiceAccounts | None:
    """Service callers need a cluster to ask: the kubeconfig's (or the pod's)."""
    if not api.service_accounts:
        return None
    check_kube_config()
    return ServiceAccounts(client.ApiClient(), api.token_audiences)


def run_watch(settings: Settings, options: WatchOptions) -> None:
    """Run until SIGTERM or SIGINT; raises ConfigError when it cannot start."""
    asyncio.run(_serve(settings, options))
