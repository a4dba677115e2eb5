"""`cleanup-stale-jobs`: fail the jobs silent past the stale timeout, then reconcile their
projects; its text output and `--timeout MINUTES` are the seed script's, kept for its cron
lines."""

from __future__ import annotations

import argparse
import json
import math
import re
from datetime import timedelta
from typing import Any

from rich.console import Console

from reel_reconciler.cli.options import given
from reel_reconciler.cli.table import report_table
from reel_reconciler.config import ConfigError
from reel_reconciler.engine import Engine, Trigger, cleanup_stale_jobs
from reel_reconciler.usage import invalid

NAME = "cleanup-stale-jobs"
_HAS_UNIT = re.compile(r"\d\s*(ms|s|m|h)\s*$")


def add(commands: Any, common: argparse.ArgumentParser) -> None:
    command = commands.add_parser(NAME, parents=[common],
                                  help="fail jobs silent past --stale-timeout, reconcile their "
                                  "projects")
    command.add_argument("--timeout", dest="timeout_minutes", metavar="MINUTES", default=None,
                         help="the stale timeout in minutes, more than 0: the seed script's "
                         "spelling (--timeout 30), kept for its cron lines; the same setting "
                         "as --stale-timeout, so give one of the two")


def seed_timeout(args: argparse.Namespace) -> None:
    """`--timeout MINUTES`, the seed script's spelling, becomes the stale timeout (raises
    ConfigError): a number of minutes, more than 0, and not beside --stale-timeout, which
    would leave the reader guessing which one wins."""
    text = getattr(args, "timeout_minutes", None)
    if text is None:
        return
    if given(args.stale_timeout) is not None:
        raise ConfigError("--timeout and --stale-timeout set the same timeout: give one "
                          "(--timeout MINUTES or --stale-timeout DURATION)")
    try:
        minutes = float(text)
    except ValueError:
        minutes = math.nan
    if not math.isfinite(minutes) or minutes <= 0:
        hint = " (for a duration with a unit use --stale-timeout)" if _HAS_UNIT.search(
            text) else ""
        raise ConfigError(invalid("--timeout", "expected a number of minutes, more than 0, "
                                  f"e.g. --timeout 30{hint}", text))
    args.stale_timeout = timedelta(minutes=minutes)


def run(engine: Engine, args: argparse.Namespace, out: Console) -> bool:
    """True when every stale job was handled without an error."""
    result = cleanup_stale_jobs(engine, dry_run=args.dry_run, trigger=Trigger.CLI)
    if args.output == "json":
        print(json.dumps(result.as_json(), indent=2))
        return not result.failed
    projects = [r.project_id for r in result.reports]
    verb = "Would clean up" if args.dry_run else "Cleaned up"
    if projects:
        out.print(f"✓ {verb} {len(projects)} stale project(s):")
        for pid in projects:
            out.print(f"  - {pid}")
        out.print(report_table(result.reports, f"{len(result.stale_jobs)} stale job(s)"))
    else:
        out.print("✓ No stale jobs found")
    if result.opted_out:
        out.print(f"{len(result.opted_out)} stale job(s) left alone: their projects "
                  "opted out")
    if result.error:
        out.print(f"[red]{result.error}[/]")
    return not result.failed
