"""Linters and validators the chart and image tests run, from their own venv (`make tools`):
checkov's pinned dependencies must not mix with the controller's."""

from __future__ import annotations

from pathlib import Path

from devkit.emulators import MissingPrerequisite

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".cache" / "tools" / "bin"


def tool(name: str) -> Path:
    path = TOOLS_BIN / name
    if not path.exists():
        raise MissingPrerequisite(f"{name} is missing: run `make tools` (installs it into "
                                  f"{TOOLS_BIN.relative_to(REPO)})")
    return path
