"""The project's dependencies as pyproject.toml declares them, for `make test-latest`.

    python -m tests.support.dependencies             # every name, on one line
    python -m tests.support.dependencies --versions  # name==installed version, one a line

`make test-latest` upgrades each name to its newest release, past our upper bounds, and runs
the suites: a release that breaks us is seen before a bound is raised to admit it.
"""

from __future__ import annotations

import argparse
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def requirements(extras: tuple[str, ...] = ("test",)) -> list[Requirement]:
    """The runtime dependencies, then those of `extras`."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    specs = [*project["dependencies"]]
    for extra in extras:
        specs.extend(project.get("optional-dependencies", {}).get(extra, []))
    return [Requirement(spec) for spec in specs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", action="store_true",
                        help="print each dependency's installed version")
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(requirement.name for requirement in requirements()))
    if not args.versions:
        print(" ".join(names))
        return 0
    for name in names:
        try:
            print(f"{name}=={version(name)}")
        except PackageNotFoundError:
            print(f"{name} (not installed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
