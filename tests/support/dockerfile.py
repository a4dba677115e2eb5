"""The Dockerfile's pip commands, read from the file itself: the tests compare them with the
lock and run them in a venv (no Docker engine here), so the file and the tests cannot drift."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from tools.manifests import REPO

DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True)
class PipStep:
    """One `pip ...` command of a RUN instruction, in stage `stage` (0 is the build stage)."""

    stage: int
    argv: tuple[str, ...]

    @property
    def command(self) -> str:
        return self.argv[1] if len(self.argv) > 1 else ""

    def option(self, name: str) -> str | None:
        """The value of `--name=value`, `--name value` or `-r value`; None when absent."""
        for index, arg in enumerate(self.argv):
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
            if arg == name and index + 1 < len(self.argv):
                return self.argv[index + 1]
        return None


def instructions(text: str | None = None) -> list[tuple[int, str, str]]:
    """(stage, keyword, arguments) for every instruction, continuation lines joined."""
    text = DOCKERFILE.read_text() if text is None else text
    joined = re.sub(r"\\\n\s*", " ", text)
    result, stage = [], -1
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        result.append((stage, keyword.upper(), rest.strip()))
    return result


def pip_steps(text: str | None = None) -> list[PipStep]:
    """Every pip command the image build runs, in order."""
    steps = []
    for stage, keyword, rest in instructions(text):
        if keyword != "RUN":
            continue
        for command in rest.split("&&"):
            argv = tuple(shlex.split(command))
            if argv and argv[0] == "pip":
                steps.append(PipStep(stage, argv))
    return steps


def copies(text: str | None = None) -> dict[str, str]:
    """Destination -> source for every COPY from the build context (not from a stage)."""
    found = {}
    for _, keyword, rest in instructions(text):
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, destination = rest.split()
            if len(sources) == 1:
                found[destination] = sources[0]
    return found
