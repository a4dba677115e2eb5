"""Dependency bounds and the lock files the venv, CI and the image install from.

pyproject.toml states what we support (a tested lower bound, an upper bound below the next
major); the lock files pin one set inside those bounds, with hashes. Nothing here looks at
the installed versions: `make test-lowest` and `make test-latest` install others that our
bounds allow (or, for latest, ignore), and these tests must hold there too.
"""

from __future__ import annotations

import subprocess

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.dependencies import ROOT, RUNTIME_LOCK, TEST_LOCK, Pin, pins, requirements
from tests.support.dockerfile import copies, pip_steps


def _outside(lock: list[Pin], declared: list[Requirement]) -> list[str]:
    """What the lock misses or pins outside the declared bounds; why for each."""
    by_name: dict[str, list[Pin]] = {}
    for pin in lock:
        by_name.setdefault(pin.name, []).append(pin)
    problems = []
    for requirement in declared:
        locked = by_name.get(canonicalize_name(requirement.name), [])
        if not locked:
            problems.append(f"{requirement.name}: not in the lock")
        problems += [f"{requirement.name} {pin.version}: outside {requirement.specifier}"
                     for pin in locked if pin.version not in requirement.specifier]
    return problems


def test_every_dependency_has_a_lower_bound_and_an_upper_bound() -> None:
    problems = [f"{requirement.name}: {requirement.specifier or 'no bounds'} lacks "
                f"{'`>=`' if operator == '>=' else 'an upper `<`'}"
                for requirement in requirements(extras=("test",))
                for operator in (">=", "<")
                if not any(spec.operator == operator for spec in requirement.specifier)]
    assert problems == []


def test_the_runtime_lock_pins_every_runtime_dependency_inside_its_bounds() -> None:
    assert _outside(pins(RUNTIME_LOCK), requirements(extras=())) == []


def test_the_test_lock_pins_every_dependency_inside_its_bounds() -> None:
    assert _outside(pins(TEST_LOCK), requirements(extras=("test",))) == []


def test_every_pin_carries_a_hash() -> None:
    unhashed = [f"{lock.name}: {pin.name}" for lock in (RUNTIME_LOCK, TEST_LOCK)
                for pin in pins(lock) if pin.hashes == 0]
    assert unhashed == []


def test_the_suite_runs_the_versions_the_image_ships() -> None:
    """The test lock holds every runtime pin at the same version."""
    tested = {(pin.name, pin.version) for pin in pins(TEST_LOCK)}
    assert [pin for pin in pins(RUNTIME_LOCK) if (pin.name, pin.version) not in tested] == []


def test_no_upper_bound_admits_a_major_beyond_the_locked_one() -> None:
    """A bound raised to a new major is locked onto it, so the default run tests that major;
    `make test-latest` looks past the bounds."""
    locked = {pin.name: pin.version for pin in pins(TEST_LOCK)}
    problems = []
    for requirement in requirements(extras=("test",)):
        version = locked.get(canonicalize_name(requirement.name))
        uppers = [Version(spec.version) for spec in requirement.specifier if spec.operator == "<"]
        if version is not None and any(upper > Version(f"{version.major + 1}")
                                       for upper in uppers):
            problems.append(f"{requirement.name} {requirement.specifier}: locked at {version}")
    assert problems == []


def test_the_image_installs_the_runtime_lock_with_hashes_then_the_project_alone() -> None:
    steps = pip_steps()
    final = max(step.stage for step in steps)
    sources = copies()
    locked = [step for step in steps if step.option("-r") is not None]
    assert locked, "no pip step of the Dockerfile installs from a lock file"
    for step in locked:
        target = step.option("-r") or ""
        source = sources.get(target) or sources.get(f"./{target}")
        assert source == "requirements/runtime.txt", f"{' '.join(step.argv)}: reads {source}"
        assert "--require-hashes" in step.argv, " ".join(step.argv)
    final_installs = [step for step in steps if step.stage == final and step.command == "install"]
    assert any(step.option("-r") for step in final_installs)
    others = [step for step in final_installs if step.option("-r") is None]
    assert others, "the project itself is not installed in the final stage"
    for step in others:
        assert "--no-deps" in step.argv, " ".join(step.argv)
        assert "--no-index" in step.argv, " ".join(step.argv)


def test_the_venv_installs_the_test_lock_with_hashes_then_the_project_alone() -> None:
    """`make venv` (also what `make test` and CI build on), read from make's dry run."""
    shown = subprocess.run(["make", "--dry-run", "--always-make", "venv"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    installs = [line.split() for line in shown.splitlines() if " install " in line]
    assert installs, shown
    relative = str(TEST_LOCK.relative_to(ROOT))
    for argv in installs:
        from_lock = "--require-hashes" in argv and relative in argv
        assert from_lock or "--no-deps" in argv, " ".join(argv)
    assert any("--require-hashes" in argv for argv in installs), shown
