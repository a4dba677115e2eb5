"""`watch`: one reconciler, always on, without Kubernetes; its own flags are checked like
every other setting before it starts."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from reel_reconciler import defaults
from reel_reconciler.api.settings import add_api_arguments, api_settings
from reel_reconciler.cli.options import (
    Fallback,
    count,
    flag_or_env,
    given,
    settings_of,
    settings_parent,
)
from reel_reconciler.cli.worker import add_work_subscription, work_paths
from reel_reconciler.config import ConfigError, parse_duration
from reel_reconciler.spec import SUBSCRIPTION_ENV, SUBSCRIPTION_PATTERN, WORK_TOPIC_ENV
from reel_reconciler.usage import fail, invalid, port_number

NAME = "watch"
RANGES_ENV = "REEL_SWEEP_RANGES"
PARALLEL_ENV = "REEL_SWEEP_PARALLEL"


def add(commands: Any) -> None:
    watch = commands.add_parser(
        NAME, parents=[settings_parent("INFO")],
        help="run always on without Kubernetes: listeners, timers, /metrics (SIGTERM drains)")
    watch.add_argument("--mode", choices=("Enforce", "Observe"), default=defaults.MODE,
                       help="Observe reports drift and writes nothing (default: %(default)s)")
    watch.add_argument("--sweep-interval", metavar="DURATION",
                       default=Fallback(defaults.SWEEP_INTERVAL),
                       help="every project is swept this often (default: %(default)s)")
    watch.add_argument("--sweep-full-every", metavar="DURATION",
                       default=Fallback(defaults.SWEEP_FULL_EVERY),
                       help="each range is passed in full this often, the rounds between "
                       "read only what storage changed (default: %(default)s; the sweep "
                       "interval or less: every round is full)")
    watch.add_argument("--sweep-ranges", metavar="M", default=Fallback(defaults.SWEEP_RANGES),
                       help=f"userId ranges a sweep is cut into (default: {RANGES_ENV} or "
                       "%(default)s; 1: one stream per store)")
    watch.add_argument("--sweep-parallel", metavar="K",
                       default=Fallback(defaults.SWEEP_PARALLEL),
                       help=f"ranges swept at once (default: {PARALLEL_ENV} or %(default)s)")
    watch.add_argument("--stale-interval", metavar="DURATION",
                       default=Fallback(defaults.STALE_INTERVAL),
                       help="stale jobs are looked for this often (default: %(default)s)")
    watch.add_argument("--notifications-subscription", metavar="PATH",
                       default=None,
                       help="Pub/Sub subscription on the bucket's notification topic, "
                       "projects/P/subscriptions/S: storage changes heal at once instead of at "
                       f"the next sweep (default: {SUBSCRIPTION_ENV}; none)")
    watch.add_argument("--work-topic", metavar="PATH", default=None,
                       help="spread each sweep round over replicas: one message per range "
                       "to this Pub/Sub topic, projects/P/topics/T; needs --work-subscription "
                       f"(default: {WORK_TOPIC_ENV}; none: this process sweeps every range)")
    add_work_subscription(watch, "the subscription on --work-topic that this process and "
                          "every `worker` take ranges from")
    watch.add_argument("--metrics-port", type=port_number, default=defaults.METRICS_PORT,
                       metavar="PORT", help="port of /metrics and /readyz (default: %(default)s)")
    add_api_arguments(watch, service_accounts=False)


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM; the exit status."""
    from reel_reconciler.watch import WatchOptions, run_watch

    intervals: dict[str, timedelta | None] = {}
    for flag, value in (("--sweep-interval", given(args.sweep_interval)),
                        ("--sweep-full-every", given(args.sweep_full_every)),
                        ("--stale-interval", given(args.stale_interval))):
        try:
            intervals[flag] = None if value is None else parse_duration(value)
        except ValueError as exc:
            return fail(invalid(flag, str(exc), value))
    where, subscription = flag_or_env("--notifications-subscription",
                                      args.notifications_subscription, SUBSCRIPTION_ENV)
    if subscription is not None and not re.fullmatch(SUBSCRIPTION_PATTERN, subscription):
        return fail(invalid(where, "expected projects/PROJECT/subscriptions/NAME",
                            subscription))
    try:
        work_topic, work_subscription = work_paths(args.work_topic, args.work_subscription)
        ranges = count("--sweep-ranges", args.sweep_ranges, RANGES_ENV, defaults.SWEEP_RANGES,
                       defaults.SWEEP_RANGES_MAX)
        parallel = count("--sweep-parallel", args.sweep_parallel, PARALLEL_ENV,
                         defaults.SWEEP_PARALLEL, defaults.SWEEP_PARALLEL_MAX)
    except ConfigError as exc:
        return fail(str(exc))
    try:
        run_watch(settings_of(args), WatchOptions(
            mode=args.mode, sweep_interval=intervals["--sweep-interval"],
            sweep_full_every=intervals["--sweep-full-every"],
            sweep_ranges=ranges, sweep_parallel=parallel,
            stale_interval=intervals["--stale-interval"], metrics_port=args.metrics_port,
            notifications_subscription=subscription, work_topic=work_topic,
            work_subscription=work_subscription, api=api_settings(args)))
    except ConfigError as exc:
        return fail(str(exc))
    return 0
