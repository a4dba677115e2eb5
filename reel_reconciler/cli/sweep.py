"""`sweep`: every project once, with a spinner on a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from reel_reconciler.cli.table import report_table
from reel_reconciler.engine import Engine, Trigger, sweep

NAME = "sweep"


def add(commands: Any, common: argparse.ArgumentParser) -> None:
    commands.add_parser(NAME, parents=[common], help="reconcile every project once")


def run(engine: Engine, args: argparse.Namespace, out: Console) -> bool:
    """True when the sweep ran to its end without an error."""
    show_progress = args.output == "text" and sys.stderr.isatty()
    progress = Progress(SpinnerColumn(), TextColumn("sweeping: {task.completed} projects"),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    with progress if show_progress else nullcontext():
        task = progress.add_task("sweep", total=None)
        result = sweep(engine, dry_run=args.dry_run, trigger=Trigger.CLI,
                       on_report=lambda _: progress.advance(task))
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
