"""`--help` is the newcomer's manual: every option and argument of every command says what it
is for. Walks the real parsers, so a new flag without help fails here."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from reel_reconciler import cli
from reel_reconciler.operator import deletion
from reel_reconciler.operator import main as operator_main


def _walk(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    """(command, action) for every action of the parser and of its subcommands. argparse has
    no public way to list a parser's actions: its own attributes are read here (stdlib's, not
    ours)."""
    for action in parser._actions:  # noqa: SLF001
        yield parser.prog, action
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {choice.dest: choice.help
                     for choice in action._choices_actions}  # noqa: SLF001
            for name, sub in action.choices.items():
                assert helps.get(name), f"{parser.prog} {name}: subcommand without help"
                yield from _walk(sub)


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for prog, action in _walk(parser):
        name = "/".join(action.option_strings) or action.metavar or action.dest
        if not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{prog} {name}")
    return missing


@pytest.mark.parametrize("parser", [cli.build_parser(), operator_main.build_parser(),
                                    deletion.build_parser()],
                         ids=["reel-reconciler", "operator", "delete-reconciler"])
def test_every_option_and_argument_has_help(parser: argparse.ArgumentParser) -> None:
    assert _undocumented(parser) == []


def test_the_walk_sees_subcommand_options() -> None:
    """The walk reaches `reconcile ID` and `--output`, so the test above is not vacuous."""
    seen = {(prog, "/".join(a.option_strings) or a.dest) for prog, a in _walk(cli.build_parser())}
    assert ("reel-reconciler reconcile", "project_ids") in seen
    assert ("reel-reconciler sweep", "--output") in seen
    assert ("reel-reconciler cleanup-stale-jobs", "--stale-timeout") in seen


def test_a_flag_without_help_is_caught() -> None:
    parser = cli.build_parser()
    parser.add_argument("--undocumented")
    assert _undocumented(parser) == ["reel-reconciler --undocumented"]
