"""`reel-reconciler operator`: what the container runs. Registers the handlers, serves
metrics and readiness, and runs Kopf with its usual flags."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import kopf
from kubernetes import client

from reel_reconciler import defaults
from reel_reconciler.api.app import start_api
from reel_reconciler.api.service_accounts import ServiceAccounts
from reel_reconciler.api.settings import ApiSettings, add_api_arguments, api_settings
from reel_reconciler.cli.worker import (
    add_parallel,
    add_work_subscription,
    parallel_of,
    subscription_of,
)
from reel_reconciler.config import ConfigError, check_emulator_hosts
from reel_reconciler.logs import add_log_arguments, setup_logging
from reel_reconciler.operator.peering import choose_priority
from reel_reconciler.preflight import check_kube_config, check_ports
from reel_reconciler.runtime.server import start_server
from reel_reconciler.runtime.worker import SweepWorker
from reel_reconciler.usage import OneLineParser, fail, port_number, port_problem

PROG = "reel-reconciler operator"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Run the Kubernetes operator for ReelReconciler objects.")
    parser.add_argument("--metrics-port", type=port_number, default=defaults.METRICS_PORT,
                        help="port of /metrics and /readyz (default: %(default)s)")
    parser.add_argument("--health-port", type=port_number, default=defaults.HEALTH_PORT,
                        help="port of Kopf's liveness endpoint /healthz (default: %(default)s)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable; globs allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch every namespace (the default without --namespace)")
    parser.add_argument("--standalone", action="store_true",
                        help="no peering: run even if other replicas are active")
    parser.add_argument("--peering", default=None, help="peering object name")
    parser.add_argument("--priority", type=int, default=None,
                        help="peering priority (default: drawn at random, never equal to a live "
                        "peer's, so that exactly one replica runs)")
    add_work_subscription(parser, "this pod, active or standing by, also sweeps ranges of "
                          "distributed sweep rounds from this subscription")
    add_parallel(parser)
    add_api_arguments(parser, service_accounts=True)
    add_log_arguments(parser, "INFO")
    return parser


async def _run(args: argparse.Namespace, api: ApiSettings | None,
               work: SweepWorker | None) -> None:
    import reel_reconciler.operator.handlers  # noqa: F401 - registers the handlers

    try:
        runner = await start_server(args.metrics_port)
    except OSError as exc:  # taken since the preflight check
        raise ConfigError(port_problem(args.metrics_port, "--metrics-port", exc)) from exc
    runners = [runner]
    try:
        if api is not None:
            accounts = ServiceAccounts(client.ApiClient(), api.token_audiences)
            runners.append(await start_api(api, accounts))
        if work is not None:  # whatever the peering decides: standby pods work too
            await asyncio.to_thread(work.start)
        priority = args.priority
        if priority is None and not args.standalone:
            priority = await asyncio.to_thread(choose_priority, args.peering,
                                               args.all_namespaces, args.namespace)
        await kopf.operator(
            standalone=args.standalone,
            peering_name=args.peering,
            priority=priority,
            clusterwide=args.all_namespaces,
            namespaces=args.namespace,
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
        )
    finally:
        if work is not None:
            await asyncio.to_thread(work.stop)
        for each in runners:
            await each.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.all_namespaces and not args.namespace:
        args.all_namespaces = True
    setup_logging(args.log_level, args.log_format)
    try:
        api = api_settings(args, service_accounts=True)
        subscription = subscription_of(args.work_subscription)
        work = None if subscription is None else SweepWorker(
            subscription, parallel_of(args.sweep_parallel))
        ports = {"--metrics-port": args.metrics_port, "--health-port": args.health_port}
        if api is not None:
            ports["--api-port"] = api.port
        check_ports(ports)
        check_emulator_hosts()
        check_kube_config()
        asyncio.run(_run(args, api, work))
    except ConfigError as exc:
        return fail(str(exc), PROG)
    return 0
