"""`reel-reconciler operator`: what the container runs. Registers the handlers, serves
metrics and readiness, and runs Kopf with its usual flags."""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Sequence

import kopf

from controller.logs import setup_logging
from controller.operator.server import start_server


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reel-reconciler operator",
        description="Run the Kubernetes operator for ReelReconciler objects.")
    parser.add_argument("--metrics-port", type=int, default=9102,
                        help="port of /metrics and /readyz (default: 9102)")
    parser.add_argument("--health-port", type=int, default=8080,
                        help="port of Kopf's liveness endpoint /healthz (default: 8080)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable; globs allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch every namespace")
    parser.add_argument("--standalone", action="store_true",
                        help="no peering: run even if other replicas are active")
    parser.add_argument("--peering", default=None, help="peering object name")
    parser.add_argument("--priority", type=int, default=None,
                        help="peering priority (default: random, so one replica wins)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=("auto", "json", "text"), default="auto")
    return parser


async def _run(args: argparse.Namespace) -> None:
    import controller.operator.handlers  # noqa: F401 - registers the handlers

    runner = await start_server(args.metrics_port)
    try:
        await kopf.operator(
            standalone=args.standalone,
            peering_name=args.peering,
            priority=args.priority if args.priority is not None else random.randint(1, 10_000),
            clusterwide=args.all_namespaces,
            namespaces=args.namespace,
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
        )
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.all_namespaces and not args.namespace:
        args.all_namespaces = True
    setup_logging(args.log_level, args.log_format)
    asyncio.run(_run(args))
    return 0
