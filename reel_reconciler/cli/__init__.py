"""reel-reconciler command line: one module per command (every command is a forced trigger:
it ignores the settle window); `operator` and `delete-reconciler` parse their own flags."""

from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from reel_reconciler import __version__
from reel_reconciler.cli import cleanup, reconcile, resume, sweep, watch, worker
from reel_reconciler.cli.options import settings_of, settings_parent
from reel_reconciler.config import ConfigError
from reel_reconciler.engine import Engine
from reel_reconciler.engine.connect import connect
from reel_reconciler.logs import setup_logging
from reel_reconciler.model import COMMAND_LINE
from reel_reconciler.usage import OneLineParser, fail

EXIT_OK, EXIT_ERRORS = 0, 1

COMMANDS: dict[str, Callable[[Engine, argparse.Namespace, Console], bool]] = {
    reconcile.NAME: reconcile.run,
    sweep.NAME: sweep.run,
    cleanup.NAME: cleanup.run,
    resume.NAME: resume.run,
}
"""The commands that run once against the stores; True: no project ended in an error."""


def build_parser() -> argparse.ArgumentParser:
    """Built when called, so that `--help` shows the defaults as they are then."""
    common = OneLineParser(add_help=False, parents=[settings_parent("WARNING")])
    common.add_argument("--dry-run", action="store_true",
                        help="observe mode: report drift, write nothing")
    common.add_argument("--output", choices=("text", "json"), default="text",
                        help="a table for people or JSON for scripts (default: %(default)s)")

    parser = OneLineParser(
        prog="reel-reconciler",
        description="Keep Reel Maker's Firestore projects consistent with the clips in GCS.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="what to do; COMMAND --help explains its options")
    for command in (reconcile, sweep, cleanup):
        command.add(commands, common)
    resume.add(commands)
    watch.add(commands)
    worker.add(commands)
    commands.add_parser("operator", add_help=False,
                        help="run the Kubernetes operator (see `operator --help`)")
    commands.add_parser("delete-reconciler", add_help=False,
                        help="delete a ReelReconciler and wait until it is gone, even with "
                        "no operator running (see `delete-reconciler --help`)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # A process that seems stuck shows where: SIGUSR1 prints every thread's stack to stderr.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if argv[:1] == ["operator"]:
        from reel_reconciler.operator.main import main as operator_main

        return operator_main(argv[1:])
    if argv[:1] == ["delete-reconciler"]:
        from reel_reconciler.operator.deletion import main as delete_main

        return delete_main(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if args.command == watch.NAME:
        return watch.run(args)
    if args.command == worker.NAME:
        return worker.run(args)
    try:
        cleanup.seed_timeout(args)
        if args.command == sweep.NAME:
            args.plan = sweep.plan_of(args)
        engine = connect(settings_of(args), COMMAND_LINE)
    except ConfigError as exc:
        return fail(str(exc))
    # Piped text keeps whole table rows on one line; a terminal uses its own width.
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 1000)
    return EXIT_OK if COMMANDS[args.command](engine, args, out) else EXIT_ERRORS
