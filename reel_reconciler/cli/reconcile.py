"""`reconcile ID...`: the given projects, now."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from reel_reconciler.cli.table import report_table
from reel_reconciler.engine import Engine, Trigger
from reel_reconciler.model import Action

NAME = "reconcile"


def add(commands: Any, common: argparse.ArgumentParser) -> None:
    command = commands.add_parser(NAME, parents=[common], help="reconcile the given projects now")
    command.add_argument("project_ids", nargs="+", metavar="ID",
                         help="a project's document id in the projects collection")


def run(engine: Engine, args: argparse.Namespace, out: Console) -> bool:
    """True when every project was reconciled without an error."""
    reports = [engine.reconcile(pid, Trigger.CLI, args.dry_run) for pid in args.project_ids]
    if args.output == "json":
        print(json.dumps([r.as_json() for r in reports], indent=2))
    else:
        out.print(report_table(reports, "reconcile" + (" (dry run)" if args.dry_run else "")))
    return not any(r.action is Action.ERROR for r in reports)
