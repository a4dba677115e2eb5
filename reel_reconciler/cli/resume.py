"""`resume-writes`: after the breaker tripped and the configuration is right again, let
destructive corrections go on."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from reel_reconciler.cli.options import settings_parent
from reel_reconciler.engine import Engine
from reel_reconciler.engine.breaker import Breaker
from reel_reconciler.model import COMMAND_LINE, WATCH, ReconcilerId
from reel_reconciler.usage import OneLineParser

NAME = "resume-writes"


def add(commands: Any) -> None:
    """Only the settings: --dry-run and --output mean nothing here."""
    settings_only = OneLineParser(add_help=False, parents=[settings_parent("WARNING")])
    command = commands.add_parser(
        NAME, parents=[settings_only],
        help="after the breaker tripped and the configuration is right again: let "
        "destructive corrections go on")
    command.add_argument("token", metavar="TOKEN",
                         help="any word that says who resumed and why (kept in the breaker's "
                         "document and logged)")
    command.add_argument("--reconciler", default=WATCH.label, metavar="NAME",
                         help=f"whose breaker: {WATCH.label} for `watch` (the default), "
                         f"{COMMAND_LINE.label} for the commands, NAMESPACE.NAME for a "
                         "ReelReconciler")


def run(engine: Engine, args: argparse.Namespace, out: Console) -> bool:
    settings = engine.settings
    breaker = Breaker(engine.firestore, settings.breaker_collection,
                      ReconcilerId.from_label(args.reconciler),
                      settings.max_destructive, settings.destructive_window.total_seconds())
    was = breaker.load()
    breaker.resume(args.token)
    out.print(f"✓ destructive corrections of {args.reconciler} resumed"
              + (f" (it had tripped: {was.reason})" if was.tripped else " (it had not tripped)"))
    return True
