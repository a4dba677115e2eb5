"""Structured logs: one JSON object a line in a container, readable text in a terminal."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from rich.console import Console, ConsoleRenderable
from rich.logging import RichHandler

LogFormat = Literal["auto", "json", "text"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
CHANGES = "reel_reconciler.changes"
"""The change log's logger: one line per write, shown down to INFO even where the commands'
default level is WARNING (a write is never silent unless --log-level ERROR asks for it)."""


def add_log_arguments(parser: argparse.ArgumentParser, level: str) -> None:
    """--log-level and --log-format, the same for every command."""
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=level,
                        help="least severe log records shown, on stderr (default: %(default)s)")
    parser.add_argument("--log-format", choices=("auto", "json", "text"), default="auto",
                        help="log records as JSON lines or text; auto: text on a terminal, "
                        "else JSON (default: %(default)s)")

# Kopf attaches its settings object and a posting flag to records; neither is log content.
_KOPF_INTERNALS = {"settings", "k8s_skip"}


def setup_logging(level: str = "INFO", fmt: LogFormat = "auto") -> None:
    """Ids travel in `extra=` fields, so both formats show them without string formatting."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(
            "{asctime}{levelname}{name}{message}", style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, *_KOPF_INTERNALS],
        ))
    else:
        handler = _TextHandler(console=Console(stderr=True), show_path=False,
                               rich_tracebacks=True)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger(CHANGES).setLevel(min(root.level, logging.INFO)
                                        if root.level <= logging.WARNING else root.level)
    for noisy in ("google", "urllib3", "grpc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", *_KOPF_INTERNALS}


class _TextHandler(RichHandler):
    """Rich text with the structured fields appended as key=value."""

    def render_message(self, record: logging.LogRecord, message: str) -> ConsoleRenderable:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if fields:
            message = message + " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return super().render_message(record, message)
