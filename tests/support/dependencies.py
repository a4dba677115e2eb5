"""The project's dependencies as pyproject.toml declares them and as the lock files pin them.

    python -m tests.support.dependencies             # every name, on one line
    python -m tests.support.dependencies --versions  # name==installed version, one a line

`make test-latest` upgrades each name to its newest release, past our upper bounds, and runs
the suites: a release that breaks us is seen before a bound is raised to admit it.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
TEST_LOCK = ROOT / "requirements" / "test.txt"


def requirements(extras: tuple[str, ...] = ("test",)) -> list[Requirement]:
    """The runtime dependencies, then those of `extras`."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    specs = [*project["dependencies"]]
    for extra in extras:
        specs.extend(project.get("optional-dependencies", {}).get(extra, []))
    return [Requirement(spec) for spec in specs]


@dataclass(frozen=True)
class Pin:
    """One `name==version [; marker]` entry of a lock file and how many hashes it carries."""

    name: NormalizedName
    version: Version
    hashes: int


def pins(lock: Path) -> list[Pin]:
    """Every entry of a lock file; an entry that is not an exact pin is an error."""
    joined = re.sub(r"\\\n\s*", " ", lock.read_text())
    found = []
    for line in joined.splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry or entry.startswith("--"):  # comments and options such as --index-url
            continue
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s;]+)", entry)
        if match is None:
            raise ValueError(f"{lock.name}: not an exact pin: {entry[:80]}")
        found.append(Pin(canonicalize_name(match[1]), Version(match[2]),
                         entry.count("--hash=sha256:")))
    return found


def _check_lower_bounds() -> int:
    """A bound that no install can reach (another package asks for more) is not tested by
    `make test-lowest`: name it, so that the bound is raised to what was tested."""
    problems = []
    for requirement in requirements():
        lower = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
        installed = Version(version(requirement.name))
        if lower and installed != lower[0]:
            problems.append(f"{requirement.name}: installed {installed}, pyproject.toml "
                            f"allows {requirement.specifier}: raise the lower bound to "
                            f"{installed} or find why it did not resolve")
    print("\n".join(problems) or "every dependency is at its lower bound")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", action="store_true",
                        help="print each dependency's installed version")
    parser.add_argument("--at-lower-bounds", action="store_true",
                        help="fail unless each dependency is installed at its `>=` bound")
    args = parser.parse_args(argv)
    if args.at_lower_bounds:
        return _check_lower_bounds()
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
