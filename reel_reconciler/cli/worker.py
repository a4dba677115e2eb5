"""`worker`: sweeps ranges of distributed sweep rounds and nothing else (no listeners, no
timers), so that more machines can join a round; `/metrics` and `/readyz` on its port, and
SIGTERM hands the ranges it holds back to Pub/Sub."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
from typing import Any

from reel_reconciler import defaults
from reel_reconciler.cli.options import Fallback, count, flag_or_env
from reel_reconciler.config import ConfigError
from reel_reconciler.logs import add_log_arguments
from reel_reconciler.preflight import check_ports
from reel_reconciler.runtime.server import start_server
from reel_reconciler.spec import (
    SUBSCRIPTION_PATTERN,
    TOPIC_PATTERN,
    WORK_SUBSCRIPTION_ENV,
    WORK_TOPIC_ENV,
)
from reel_reconciler.usage import fail, invalid, port_number, port_problem

NAME = "worker"
PARALLEL_ENV = "REEL_SWEEP_PARALLEL"

log = logging.getLogger(__name__)


def add_work_subscription(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--work-subscription", metavar="PATH", default=None,
                        help=f"{text}, projects/P/subscriptions/S (default: "
                        f"{WORK_SUBSCRIPTION_ENV}; none)")


def _checked(where: str, value: str | None, pattern: str, shape: str) -> str | None:
    if value is not None and not re.fullmatch(pattern, value):
        raise ConfigError(invalid(where, f"expected {shape}", value))
    return value


def work_paths(topic: object, subscription: object) -> tuple[str | None, str | None]:
    """The work topic and subscription from their flags, else the environment: both or
    neither, each a full resource name (raises ConfigError)."""
    topic_from, topic_path = flag_or_env("--work-topic", topic, WORK_TOPIC_ENV)
    sub_from, sub_path = flag_or_env("--work-subscription", subscription,
                                     WORK_SUBSCRIPTION_ENV)
    _checked(topic_from, topic_path, TOPIC_PATTERN, "projects/PROJECT/topics/NAME")
    _checked(sub_from, sub_path, SUBSCRIPTION_PATTERN, "projects/PROJECT/subscriptions/NAME")
    if (topic_path is None) != (sub_path is None):
        given, missing = ((topic_from, "--work-subscription") if sub_path is None
                          else (sub_from, "--work-topic"))
        raise ConfigError(f"{given} needs {missing} too (or neither: one process sweeps "
                          "every range)")
    return topic_path, sub_path


def add_parallel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sweep-parallel", metavar="K",
                        default=Fallback(defaults.SWEEP_PARALLEL),
                        help=f"ranges swept at once (default: {PARALLEL_ENV} or %(default)s)")


def subscription_of(value: object) -> str | None:
    """The work subscription from its flag, else the environment, checked (ConfigError)."""
    where, subscription = flag_or_env("--work-subscription", value, WORK_SUBSCRIPTION_ENV)
    return _checked(where, subscription, SUBSCRIPTION_PATTERN,
                    "projects/PROJECT/subscriptions/NAME")


def parallel_of(value: object) -> int:
    return count("--sweep-parallel", value, PARALLEL_ENV, defaults.SWEEP_PARALLEL,
                 defaults.SWEEP_PARALLEL_MAX)


def add(commands: Any) -> None:
    worker = commands.add_parser(
        NAME, help="sweep ranges of distributed sweep rounds only: no listeners, no timers "
        "(SIGTERM hands the ranges held back)")
    add_work_subscription(worker, "the subscription on the coordinators' work topic to take "
                          "ranges from")
    add_parallel(worker)
    worker.add_argument("--metrics-port", type=port_number, default=defaults.METRICS_PORT,
                        metavar="PORT", help="port of /metrics and /readyz (default: "
                        "%(default)s)")
    add_log_arguments(worker, "INFO")


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM; the exit status."""
    try:
        subscription = subscription_of(args.work_subscription)
        if subscription is None:
            raise ConfigError(f"a worker needs --work-subscription or {WORK_SUBSCRIPTION_ENV}")
        parallel = parallel_of(args.sweep_parallel)
        asyncio.run(_serve(subscription, parallel, args.metrics_port))
    except ConfigError as exc:
        return fail(str(exc))
    return 0


async def _serve(subscription: str, parallel: int, port: int) -> None:
    from reel_reconciler.runtime.worker import SweepWorker

    check_ports({"--metrics-port": port})
    worker = SweepWorker(subscription, parallel)
    try:
        server = await start_server(port, ready=lambda: worker.running)
    except OSError as exc:
        raise ConfigError(port_problem(port, "--metrics-port", exc)) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await asyncio.to_thread(worker.start)
        log.info("working", extra={"subscription": subscription, "sweepParallel": parallel,
                                   "metricsPort": port})
        await stop.wait()
        log.info("stopping: handing the ranges held back")
        await asyncio.to_thread(worker.stop)
    finally:
        await server.cleanup()
    log.info("stopped")
