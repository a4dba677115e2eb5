"""The option tables of the docs against the code they describe. The configuration table of
docs/cli.md lists every setting `Settings` reads: its flag (as the commands' --help shows
it), its environment variables in the order they are read, and its default; the tables of
`watch`, the operator and the endpoint list exactly the flags their --help shows. A setting
added, a variable renamed or a default changed in defaults.py fails here until the page
follows."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from collections.abc import Set as AbstractSet
from datetime import timedelta
from pathlib import Path

from pydantic import AliasChoices

from reel_reconciler import defaults
from reel_reconciler.config import Settings, flag_for
from tests.support.patience import bound

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

_INVOCATION = re.compile(r"^\s{2,}(-[^\s].*?)(?:\s{2,}|$)")
_LONG_FLAG = re.compile(r"--[a-z][a-z0-9-]*")
_CODE = re.compile(r"`([^`]+)`")
COMMON = {"--help", "--log-level", "--log-format"}
"""Flags every command has, documented once in prose."""

OTHER_DEFAULTS: dict[str, object] = {
    "--sweep-interval": defaults.SWEEP_INTERVAL,
    "--stale-interval": defaults.STALE_INTERVAL,
    "--sweep-ranges": defaults.SWEEP_RANGES,
    "--sweep-parallel": defaults.SWEEP_PARALLEL,
    "--ranges": defaults.SWEEP_RANGES,
    "--parallel": defaults.SWEEP_PARALLEL,
    "--metrics-port": defaults.METRICS_PORT,
    "--health-port": defaults.HEALTH_PORT,
    "--api-rate-limit": defaults.API_RATE_LIMIT,
}
"""Defaults of flags outside Settings that live in defaults.py."""


@functools.cache
def help_flags(*command: str) -> frozenset[str]:
    """The long flags a command's --help lists (its option lines, not its prose), from the
    installed command as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "reel_reconciler.cli", *command, "--help"],
                          capture_output=True, text=True, timeout=bound(30), check=False)
    assert done.returncode == 0, done.stderr
    flags = set()
    for line in done.stdout.splitlines():
        if match := _INVOCATION.match(line):
            flags.update(_LONG_FLAG.findall(match.group(1)))
    return frozenset(flags)


def shown(value: object) -> str:
    """A default as the docs write it: durations as 30s, 5m, 1h30m; 10.0 as 10."""
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        hours, rest = divmod(seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
        return "".join(parts) or "0s"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table(page: Path, heading: str) -> list[list[str]]:
    """The cells of the first table after `heading` on the page, header row left out."""
    lines = page.read_text().splitlines()
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("#") and rows:
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2, f"{page.name}: no table under {heading!r}"
    return rows[2:]


def first_code(cell: str) -> str | None:
    match = _CODE.match(cell)
    return match.group(1) if match else None


def expected_settings(cli_flags: AbstractSet[str]) -> dict[str, tuple[str, list[str], str | None]]:
    """Each setting as the table should show it: flag (`none` without one), environment
    variables, and the default (None: the table explains it in words)."""
    expected = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices), name
        env = [choice for choice in alias.choices if isinstance(choice, str)]
        flag = flag_for(name) if flag_for(name) in cli_flags else "none"
        value = field.get_default(call_default_factory=True)
        default = None if value is None else shown(value)
        expected[name] = (flag, env, default)
    return expected


def documented_settings(rows: list[list[str]]) -> dict[str, tuple[str, list[str], str | None]]:
    """The configuration table's rows, keyed by their first variable."""
    documented = {}
    for flag_cell, env_cell, default_cell, *_ in rows:
        env = _CODE.findall(env_cell)
        assert env, f"a row without an environment variable: {flag_cell}"
        flag = first_code(flag_cell) or flag_cell
        documented[env[0]] = (flag, env, first_code(default_cell))
    return documented


def config_mismatches(rows: list[list[str]], cli_flags: AbstractSet[str]) -> list[str]:
    expected = {env[0]: (name, (flag, env, default))
                for name, (flag, env, default) in expected_settings(cli_flags).items()}
    documented = documented_settings(rows)
    problems = [f"{env}: not in the table (setting {name})"
                for env, (name, _) in expected.items() if env not in documented]
    problems += [f"{env}: no such setting" for env in documented if env not in expected]
    for env, (name, want) in expected.items():
        if env in documented and documented[env] != want:
            problems.append(f"{name}: documented {documented[env]}, the code says {want}")
    return problems


def test_the_configuration_table_matches_settings() -> None:
    rows = table(DOCS / "cli.md", "## Configuration")
    assert config_mismatches(rows, help_flags("sweep")) == []


def test_every_settings_flag_is_a_setting() -> None:
    """The one-shot commands take the settings and three flags of their own, nothing else."""
    settings_flags = {flag_for(name) for name in Settings.model_fields}
    extra = help_flags("sweep") - settings_flags - COMMON
    assert extra == {"--dry-run", "--output", "--ranges", "--parallel"}


def test_a_changed_default_or_variable_is_caught() -> None:
    """The comparison can fail: a default, a variable and a flag edited in the table."""
    rows = table(DOCS / "cli.md", "## Configuration")
    cli_flags = help_flags("sweep")
    edited = [[cell.replace("`30m`", "`45m`") if row[0] == "`--stale-timeout`" else cell
               for cell in row] for row in rows if row[1] != "`REEL_PAGE_SIZE`"]
    edited = [[cell.replace("`--settle`", "none") for cell in row] for row in edited]
    problems = config_mismatches(edited, cli_flags)
    assert any(p.startswith("REEL_PAGE_SIZE: not in the table") for p in problems), problems
    assert any(p.startswith("stale_timeout: documented") for p in problems), problems
    assert any(p.startswith("settle: documented") for p in problems), problems
    assert len(problems) == 3, problems


def _flag_rows(page: Path, heading: str) -> dict[str, str]:
    """A flag table's rows: each long flag of the first cell, with the row's default cell."""
    rows = {}
    for flag_cell, default_cell, *_ in table(page, heading):
        for flag in _LONG_FLAG.findall(flag_cell):
            rows[flag] = default_cell
    return rows


def _defaults_match(rows: dict[str, str]) -> list[str]:
    return [f"{flag}: documented {rows[flag]}, defaults.py says {shown(value)}"
            for flag, value in OTHER_DEFAULTS.items()
            if flag in rows and first_code(rows[flag]) != shown(value)]


def test_the_watch_table_matches_its_help() -> None:
    rows = _flag_rows(DOCS / "cli.md", "## `watch`: the reconciler without Kubernetes")
    settings_flags = {flag_for(name) for name in Settings.model_fields}
    own = {flag for flag in help_flags("watch") - settings_flags - COMMON
           if not flag.startswith("--api-")}
    assert set(rows) == own
    assert _defaults_match(rows) == []


def test_the_worker_table_matches_its_help() -> None:
    rows = _flag_rows(DOCS / "cli.md", "## `worker`: more processes for distributed sweep rounds")
    assert set(rows) == help_flags("worker") - COMMON
    assert _defaults_match(rows) == []


def test_the_operator_table_matches_its_help() -> None:
    rows = _flag_rows(DOCS / "operator.md", "## Flags")
    own = {flag for flag in help_flags("operator") - COMMON
           if not flag.startswith("--api-")}
    assert set(rows) == own
    assert _defaults_match(rows) == []


def test_the_endpoint_options_match_their_help() -> None:
    rows = _flag_rows(DOCS / "endpoint.md", "## Options")
    api = {flag for command in ("watch", "operator") for flag in help_flags(command)
           if flag.startswith("--api-")}
    assert set(rows) == api
    assert _defaults_match(rows) == []
