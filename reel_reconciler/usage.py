"""Input errors, worded once: `invalid WHERE 'VALUE': WHAT TO DO`, one line on stderr, exit 2.

A newcomer reads the first line only; a traceback or a usage block hides what to set.
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import NoReturn

EXIT_USAGE = 2


def invalid(where: str, problem: str, value: object = None) -> str:
    """`invalid --stale-timeout 'banana': not a duration such as 30s, 5m or 1h`; `where` is
    how the user spelled the setting (a flag, an environment variable, a spec path)."""
    shown = f" {value!r}" if isinstance(value, str | int | float) else ""
    return f"invalid {where}{shown}: {problem}"


def port_problem(port: int, flag: str, exc: OSError) -> str:
    """`port 9102 (--metrics-port) is in use: choose another with --metrics-port`."""
    problem = "is in use" if exc.errno == errno.EADDRINUSE else (
        f"cannot be opened ({exc.strerror or exc})")
    return f"port {port} ({flag}) {problem}: choose another with {flag}"


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def fail(message: str, prog: str = "reel-reconciler") -> int:
    """Print the one line and return the exit status for input errors."""
    print(f"{prog}: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        sys.exit(fail(f"{message} (see {self.prog} --help)", self.prog))
