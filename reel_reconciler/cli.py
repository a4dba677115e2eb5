"""reel-reconciler command line: reconcile, sweep and cleanup-stale-jobs (every command is a
forced trigger: it ignores the settle window)."""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from reel_reconciler import __version__, defaults
from reel_reconciler.api.settings import add_api_arguments, api_settings
from reel_reconciler.config import ConfigError, Settings, flag_for, load_settings, parse_duration
from reel_reconciler.engine import Engine, Trigger, cleanup_stale_jobs, sweep
from reel_reconciler.engine.breaker import Breaker
from reel_reconciler.engine.connect import connect
from reel_reconciler.logs import add_log_arguments, setup_logging
from reel_reconciler.model import Action, Report
from reel_reconciler.spec import SUBSCRIPTION_ENV, SUBSCRIPTION_PATTERN
from reel_reconciler.usage import OneLineParser, fail, invalid, port_number

EXIT_OK, EXIT_ERRORS = 0, 1
_HAS_UNIT = re.compile(r"\d\s*(ms|s|m|h)\s*$")

# Values stay strings here: Settings validates flags and environment variables alike, so a
# bad value reads the same whichever way it came (`invalid --stale-timeout 'banana': ...`).
_SETTING_FLAGS: list[tuple[str, str, str]] = [
    ("gcp_project", "PROJECT", "GCP project (default: GOOGLE_CLOUD_PROJECT)"),
    ("database", "NAME", "Firestore database (default: REEL_FIRESTORE_DATABASE or (default))"),
    ("bucket", "NAME", "GCS bucket (default: REEL_BUCKET, then the app's "
     "REEL_MAKER_GCS_BUCKET, VIDEO_GENERATION_BUCKET, VIDEO_STORAGE_BUCKET)"),
    ("root_prefix", "PREFIX", "object prefix of the app (default: REEL_ROOT_PREFIX or "
     "reel-maker)"),
    ("projects_collection", "NAME",
     "projects collection (default: REEL_PROJECTS_COLLECTION or reel_maker_projects)"),
    ("jobs_collection", "NAME",
     "jobs collection (default: REEL_JOBS_COLLECTION or reel_maker_jobs)"),
    ("stale_timeout", "DURATION", "a queued/processing job silent this long is stale: a "
     "duration such as 30s, 5m or 1h (default: REEL_STALE_TIMEOUT or 30m)"),
    ("request_timeout", "SECONDS", "seconds per request (default: REEL_REQUEST_TIMEOUT or 10)"),
    ("retry_deadline", "SECONDS",
     "seconds to keep retrying a failing request (default: REEL_RETRY_DEADLINE or 15)"),
    ("page_size", "N", "Firestore projects per page (default: REEL_PAGE_SIZE or 300)"),
    ("gcs_page_size", "N", "GCS objects per list page (default: REEL_GCS_PAGE_SIZE or 1000)"),
    ("concurrency", "N", "projects reconciled at once (default: REEL_CONCURRENCY or 8)"),
    ("settle", "DURATION", "automatic triggers skip a project written this recently, and a "
     "`generating` one is left to its starting job even when forced; 0s: no window "
     "(default: REEL_SETTLE or 30s)"),
    ("stitch_timeout", "DURATION", "a `stitching` project is the stitcher's this long "
     "(default: REEL_STITCH_TIMEOUT, else the stale timeout)"),
    ("max_destructive", "N", "destructive corrections (a claimed clip emptied, a stitched reel "
     "dropped, a ready project demoted) allowed per --destructive-window before the breaker "
     "trips and pauses them (default: REEL_MAX_DESTRUCTIVE or 50; 0: none)"),
    ("destructive_window", "DURATION",
     "the breaker's window (default: REEL_DESTRUCTIVE_WINDOW or 10m)"),
    ("opt_out_field", "NAME", "a project whose document has this field set to true is "
     "reported, never written, nor are its jobs (default: REEL_OPT_OUT_FIELD or "
     "reconcilerOptOut)"),
    ("flap_corrections", "N", "a project whose corrections another writer undid this many "
     "times within --flap-window is held (default: REEL_FLAP_CORRECTIONS or 2)"),
    ("flap_window", "DURATION", "the window in which undone corrections count (default: "
     "REEL_FLAP_WINDOW or 1h)"),
    ("flap_hold", "DURATION", "a flapping project is retried this long after its last "
     "correction (default: REEL_FLAP_HOLD or 1h)"),
]


def _settings_parent(log_level: str) -> argparse.ArgumentParser:
    """Where the data is and how hard to push: every command's options."""
    parent = OneLineParser(add_help=False)
    for dest, metavar, text in _SETTING_FLAGS:
        parent.add_argument(flag_for(dest), dest=dest, metavar=metavar, default=None, help=text)
    add_log_arguments(parent, log_level)
    return parent


def _add_watch(commands: Any) -> None:
    watch = commands.add_parser(
        "watch", parents=[_settings_parent("INFO")],
        help="run always on without Kubernetes: listeners, timers, /metrics (SIGTERM drains)")
    watch.add_argument("--mode", choices=("Enforce", "Observe"), default="Enforce",
                       help="Observe reports drift and writes nothing (default: Enforce)")
    watch.add_argument("--sweep-interval", metavar="DURATION", default=None,
                       help="every project is swept this often (default: 30m)")
    watch.add_argument("--stale-interval", metavar="DURATION", default=None,
                       help="stale jobs are looked for this often (default: 5m)")
    watch.add_argument("--notifications-subscription", metavar="PATH",
                       default=None,
                       help="Pub/Sub subscription on the bucket's notification topic, "
                       "projects/P/subscriptions/S: storage changes heal at once instead of at "
                       "the next sweep (default: REEL_NOTIFICATIONS_SUBSCRIPTION; none)")
    watch.add_argument("--metrics-port", type=port_number, default=defaults.METRICS_PORT,
                       metavar="PORT", help="port of /metrics and /readyz (default: %(default)s)")
    add_api_arguments(watch, service_accounts=False)


def build_parser() -> argparse.ArgumentParser:
    common = OneLineParser(add_help=False, parents=[_settings_parent("WARNING")])
    common.add_argument("--dry-run", action="store_true",
                        help="observe mode: report drift, write nothing")
    common.add_argument("--output", choices=("text", "json"), default="text",
                        help="a table for people or JSON for scripts (default: text)")

    parser = OneLineParser(
        prog="reel-reconciler",
        description="Keep Reel Maker's Firestore projects consistent with the clips in GCS.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="what to do; COMMAND --help explains its options")
    rec = commands.add_parser("reconcile", parents=[common],
                              help="reconcile the given projects now")
    rec.add_argument("project_ids", nargs="+", metavar="ID",
                     help="a project's document id in the projects collection")
    commands.add_parser("sweep", parents=[common], help="reconcile every project once")
    stale = commands.add_parser("cleanup-stale-jobs", parents=[common],
                                help="fail jobs silent past --stale-timeout, reconcile their "
                                "projects")
    stale.add_argument("--timeout", dest="timeout_minutes", metavar="MINUTES", default=None,
                       help="the stale timeout in minutes, more than 0: the seed script's "
                       "spelling (--timeout 30), kept for its cron lines; the same setting as "
                       "--stale-timeout, so give one of the two")
    settings_only = OneLineParser(add_help=False, parents=[_settings_parent("WARNING")])
    resume = commands.add_parser(
        "resume-writes", parents=[settings_only],
        help="after the breaker tripped and the configuration is right again: let "
        "destructive corrections go on")
    resume.add_argument("token", metavar="TOKEN",
                        help="any word that says who resumed and why (kept in the breaker's "
                        "document and logged)")
    resume.add_argument("--reconciler", default="local.watch", metavar="NAME",
                        help="whose breaker: local.watch for `watch` (the default), cli for "
                        "the commands, NAMESPACE.NAME for a ReelReconciler")
    _add_watch(commands)
    commands.add_parser("operator", add_help=False,
                        help="run the Kubernetes operator (see `operator --help`)")
    commands.add_parser("delete-reconciler", add_help=False,
                        help="delete a ReelReconciler and wait until it is gone, even with "
                        "no operator running (see `delete-reconciler --help`)")
    return parser


def _watch(args: argparse.Namespace) -> int:
    """`watch`: its own flags checked like every other setting, then run until SIGTERM."""
    from reel_reconciler.watch import WatchOptions, run_watch

    intervals: dict[str, timedelta | None] = {}
    for flag, value in (("--sweep-interval", args.sweep_interval),
                        ("--stale-interval", args.stale_interval)):
        try:
            intervals[flag] = None if value is None else parse_duration(value)
        except ValueError as exc:
            return fail(invalid(flag, str(exc), value))
    subscription, where = args.notifications_subscription, "--notifications-subscription"
    if subscription is None:
        where = SUBSCRIPTION_ENV
        subscription = os.environ.get(SUBSCRIPTION_ENV) or None
    if subscription is not None and not re.fullmatch(SUBSCRIPTION_PATTERN, subscription):
        return fail(invalid(where, "expected projects/PROJECT/subscriptions/NAME",
                            subscription))
    try:
        run_watch(_settings(args), WatchOptions(
            mode=args.mode, sweep_interval=intervals["--sweep-interval"],
            stale_interval=intervals["--stale-interval"], metrics_port=args.metrics_port,
            notifications_subscription=subscription, api=api_settings(args)))
    except ConfigError as exc:
        return fail(str(exc))
    return EXIT_OK


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(**{dest: getattr(args, dest) for dest, _, _ in _SETTING_FLAGS})


def _seed_timeout(args: argparse.Namespace) -> None:
    """`cleanup-stale-jobs --timeout MINUTES`, the seed script's spelling, becomes the stale
    timeout (raises ConfigError): a number of minutes, more than 0, and not beside
    --stale-timeout, which would leave the reader guessing which one wins."""
    text = getattr(args, "timeout_minutes", None)
    if text is None:
        return
    if args.stale_timeout is not None:
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


def _status(r: Report) -> str:
    """The status a row had, or `before → after` when this run changed (or would change) it.
    A skipped project keeps its status: nothing was decided about it."""
    before = r.original_status or "?"
    if r.action is Action.SKIPPED or r.corrected_status in (None, r.original_status):
        return before
    return f"{before} → {r.corrected_status}"


def _action(r: Report) -> str:
    """The action; a skip says why, since "skipped" alone leaves the reader guessing."""
    if r.action is Action.SKIPPED and r.reason:
        return f"{r.action.value} ({r.reason})"
    return r.action.value


def _report_table(reports: Sequence[Report], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("project", overflow="fold")
    table.add_column("status")
    for column in ("claimed", "verified", "missing", "restored"):
        table.add_column(column, justify="right")
    table.add_column("action", no_wrap=True)
    table.add_column("note", overflow="fold")
    for r in reports:
        style = {Action.ERROR: "red", Action.CONFLICT: "red", Action.CORRECTED: "green",
                 Action.DRIFT: "yellow", Action.SKIPPED: "dim"}.get(r.action, "")
        action = escape(_action(r))
        note = r.error or ("" if r.action is Action.SKIPPED else r.reason) or ", ".join(
            k.value for k in r.drift_kinds)
        table.add_row(escape(r.project_id), _status(r), str(r.claimed_clips), str(r.verified_clips),
                      str(len(r.missing_clips)), str(len(r.restored_clips)),
                      f"[{style}]{action}[/]" if style else action, escape(note))
    return table


def _cmd_reconcile(engine: Engine, args: argparse.Namespace, out: Console) -> int:
    reports = [engine.reconcile(pid, Trigger.CLI, args.dry_run) for pid in args.project_ids]
    if args.output == "json":
        print(json.dumps([r.as_json() for r in reports], indent=2))
    else:
        out.print(_report_table(reports, "reconcile" + (" (dry run)" if args.dry_run else "")))
    return EXIT_ERRORS if any(r.action is Action.ERROR for r in reports) else EXIT_OK


def _cmd_sweep(engine: Engine, args: argparse.Namespace, out: Console) -> int:
    show_progress = args.output == "text" and sys.stderr.isatty()
    progress = Progress(SpinnerColumn(), TextColumn("sweeping: {task.completed} projects"),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    with progress if show_progress else nullcontext():
        task = progress.add_task("sweep", total=None)
        result = sweep(engine, dry_run=args.dry_run, trigger=Trigger.CLI,
                       on_report=lambda _: progress.advance(task))
    if args.output == "json":
        print(json.dumps(result.as_json(), indent=2))
    else:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(result.actions.items())) or "none"
        out.print(f"Swept {result.scanned} project(s) in {result.duration_seconds:.2f}s"
                  f"{' (dry run)' if args.dry_run else ''}: {counts}; "
                  f"{result.gcs_requests} GCS and {result.firestore_requests} Firestore "
                  "requests")
        if result.reports:
            out.print(_report_table(result.reports, "projects that need attention"))
        if result.aborted:
            out.print(f"[red]{result.aborted}[/]")
    return EXIT_ERRORS if result.failed else EXIT_OK


def _cmd_cleanup(engine: Engine, args: argparse.Namespace, out: Console) -> int:
    result = cleanup_stale_jobs(engine, dry_run=args.dry_run, trigger=Trigger.CLI)
    if args.output == "json":
        print(json.dumps(result.as_json(), indent=2))
    else:
        projects = [r.project_id for r in result.reports]
        verb = "Would clean up" if args.dry_run else "Cleaned up"
        if projects:
            out.print(f"✓ {verb} {len(projects)} stale project(s):")
            for pid in projects:
                out.print(f"  - {pid}")
            out.print(_report_table(result.reports, f"{len(result.stale_jobs)} stale job(s)"))
        else:
            out.print("✓ No stale jobs found")
        if result.opted_out:
            out.print(f"{len(result.opted_out)} stale job(s) left alone: their projects "
                      "opted out")
        if result.error:
            out.print(f"[red]{result.error}[/]")
    return EXIT_ERRORS if result.failed else EXIT_OK


def _cmd_resume(engine: Engine, args: argparse.Namespace, out: Console) -> int:
    settings = engine.settings
    breaker = Breaker(engine.firestore, settings.breaker_collection, args.reconciler,
                      settings.max_destructive, settings.destructive_window.total_seconds())
    was = breaker.load()
    breaker.resume(args.token)
    out.print(f"✓ destructive corrections of {args.reconciler} resumed"
              + (f" (it had tripped: {was.reason})" if was.tripped else " (it had not tripped)"))
    return EXIT_OK


COMMANDS: dict[str, Callable[[Engine, argparse.Namespace, Console], int]] = {
    "reconcile": _cmd_reconcile,
    "sweep": _cmd_sweep,
    "cleanup-stale-jobs": _cmd_cleanup,
    "resume-writes": _cmd_resume,
}


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
    if args.command == "watch":
        return _watch(args)
    try:
        _seed_timeout(args)
        engine = connect(_settings(args))
    except ConfigError as exc:
        return fail(str(exc))
    # Piped text keeps whole table rows on one line; a terminal uses its own width.
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 1000)
    return COMMANDS[args.command](engine, args, out)


if __name__ == "__main__":
    sys.exit(main())
