"""`sweep`: every project once, with a spinner on a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from reel_reconciler import defaults
from reel_reconciler.cli.options import Fallback, count
from reel_reconciler.cli.table import report_table
from reel_reconciler.engine import Engine, Trigger, sweep
from reel_reconciler.engine.sweep.ranges import SweepPlan

NAME = "sweep"


def add(commands: Any, common: argparse.ArgumentParser) -> None:
    swept = commands.add_parser(NAME, parents=[common], help="reconcile every project once")
    swept.add_argument("--ranges", metavar="M", default=Fallback(defaults.SWEEP_RANGES),
                       help="cut the keyspace into M userId ranges (default: %(default)s; "
                       "1: one stream per store)")
    swept.add_argument("--parallel", metavar="K", default=Fallback(defaults.SWEEP_PARALLEL),
                       help="sweep K ranges at once (default: %(default)s)")


def plan_of(args: argparse.Namespace) -> SweepPlan:
    """`--ranges M --parallel K` (raises ConfigError)."""
    return SweepPlan(
        count("--ranges", args.ranges, None, defaults.SWEEP_RANGES, defaults.SWEEP_RANGES_MAX),
        count("--parallel", args.parallel, None, defaults.SWEEP_PARALLEL,
              defaults.SWEEP_PARALLEL_MAX))


def run(engine: Engine, args: argparse.Namespace, out: Console) -> bool:
    """True when the sweep ran to its end without an error."""
    plan: SweepPlan = args.plan
    show_progress = args.output == "text" and sys.stderr.isatty()
    progress = Progress(SpinnerColumn(), TextColumn("sweeping: {task.completed} projects"),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    with progress if show_progress else nullcontext():
        task = progress.add_task("sweep", total=None)
        result = sweep(engine, dry_run=args.dry_run, trigger=Trigger.CLI,
                       on_report=lambda _: progress.advance(task), plan=plan)
    if args.output == "json":
        print(json.dumps(result.as_json(), indent=2))
        return not result.failed
    counts = ", ".join(f"{k}={v}" for k, v in sorted(result.counts().items())) or "none"
    out.print(f"Swept {result.scanned} project(s) in {result.duration_seconds:.2f}s"
              f"{' (dry run)' if args.dry_run else ''}: {counts}; "
              f"{result.gcs_requests} GCS and {result.firestore_requests} Firestore "
              "requests")
    if result.reports:
        out.print(report_table(result.reports, "projects that need attention"))
    if result.aborted:
        out.print(f"[red]{result.aborted}[/]")
    return not result.failed
