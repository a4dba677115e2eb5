"""reel-reconciler command line: reconcile, sweep and cleanup-stale-jobs (every command is a
forced trigger: it ignores the settle window)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from controller import __version__
from controller.config import ConfigError, Settings, load_settings, parse_duration
from controller.engine import Engine, Trigger, cleanup_stale_jobs, sweep
from controller.engine.connect import connect
from controller.logs import setup_logging
from controller.model import Action, Report

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2

_SETTING_FLAGS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--gcp-project", "gcp_project", str, "GCP project (default: GOOGLE_CLOUD_PROJECT)"),
    ("--database", "database", str, "Firestore database (default: (default))"),
    ("--bucket", "bucket", str, "GCS bucket (default: REEL_BUCKET, then the app's "
     "REEL_MAKER_GCS_BUCKET, VIDEO_GENERATION_BUCKET, VIDEO_STORAGE_BUCKET)"),
    ("--root-prefix", "root_prefix", str, "object prefix of the app (default: reel-maker)"),
    ("--projects-collection", "projects_collection", str,
     "projects collection (default: REEL_PROJECTS_COLLECTION or reel_maker_projects)"),
    ("--jobs-collection", "jobs_collection", str,
     "jobs collection (default: REEL_JOBS_COLLECTION or reel_maker_jobs)"),
    ("--stale-timeout", "stale_timeout", parse_duration,
     "a queued/processing job silent this long is stale (default: 30m)"),
    ("--request-timeout", "request_timeout", float, "seconds per request (default: 10)"),
    ("--retry-deadline", "retry_deadline", float,
     "seconds to keep retrying a failing request (default: 15)"),
    ("--page-size", "page_size", int, "Firestore projects per page (default: 300)"),
    ("--gcs-page-size", "gcs_page_size", int, "GCS objects per list page (default: 1000)"),
    ("--concurrency", "concurrency", int, "projects reconciled at once (default: 8)"),
]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    for flag, dest, kind, text in _SETTING_FLAGS:
        common.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    common.add_argument("--dry-run", action="store_true",
                        help="observe mode: report drift, write nothing")
    common.add_argument("--output", choices=("text", "json"), default="text")
    common.add_argument("--log-level", default="WARNING")
    common.add_argument("--log-format", choices=("auto", "json", "text"), default="auto")

    parser = argparse.ArgumentParser(
        prog="reel-reconciler",
        description="Keep Reel Maker's Firestore projects consistent with the clips in GCS.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("reconcile", parents=[common],
                              help="reconcile the given projects now")
    rec.add_argument("project_ids", nargs="+", metavar="ID")
    commands.add_parser("sweep", parents=[common], help="reconcile every project once")
    stale = commands.add_parser("cleanup-stale-jobs", parents=[common],
                                help="fail jobs stuck past the timeout, reconcile their projects")
    stale.add_argument("--timeout", type=float, default=None, metavar="MINUTES",
                       help="minutes of silence after which a job is stale (default: 30)")
    commands.add_parser("operator", add_help=False,
                        help="run the Kubernetes operator (see `operator --help`)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    values = {dest: getattr(args, dest) for _, dest, _, _ in _SETTING_FLAGS}
    if getattr(args, "timeout", None) is not None:
        values["stale_timeout"] = timedelta(minutes=args.timeout)
    return load_settings(**values)


def _report_table(reports: Sequence[Report], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("project", overflow="fold")
    table.add_column("status")
    for column in ("claimed", "verified", "missing", "restored"):
        table.add_column(column, justify="right")
    table.add_column("action", no_wrap=True)
    table.add_column("note")
    for r in reports:
        status = (r.original_status or "?") if r.original_status == r.corrected_status else (
            f"{r.original_status or '?'} → {r.corrected_status or '?'}")
        style = {Action.ERROR: "red", Action.CONFLICT: "red", Action.CORRECTED: "green",
                 Action.DRIFT: "yellow", Action.SKIPPED: "dim"}.get(r.action, "")
        table.add_row(r.project_id, status, str(r.claimed_clips), str(r.verified_clips),
                      str(len(r.missing_clips)), str(len(r.restored_clips)),
                      f"[{style}]{r.action.value}[/]" if style else r.action.value,
                      r.error or r.reason or ", ".join(k.value for k in r.drift_kinds))
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
        if result.error:
            out.print(f"[red]{result.error}[/]")
    return EXIT_ERRORS if result.failed else EXIT_OK


COMMANDS: dict[str, Callable[[Engine, argparse.Namespace, Console], int]] = {
    "reconcile": _cmd_reconcile,
    "sweep": _cmd_sweep,
    "cleanup-stale-jobs": _cmd_cleanup,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["operator"]:
        from controller.operator.main import main as operator_main

        return operator_main(argv[1:])
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        engine = connect(_settings(args))
    except ConfigError as exc:
        print(f"reel-reconciler: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Piped text keeps whole table rows on one line; a terminal uses its own width.
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    return COMMANDS[args.command](engine, args, out)


if __name__ == "__main__":
    sys.exit(main())
