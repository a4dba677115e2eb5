"""Every runtime dependency has an upper bound, and the Google client libraries we build on
are bounded exactly below their next major version.

The controller speaks to Firestore through the generated client, proto-plus and gRPC channel
options directly; a major release of any of them may change those surfaces. `make
test-latest` runs the suites on the newest releases to tell when a bound can move.
"""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version

from tests.support.dependencies import requirements

BOUNDED = ("google-cloud-firestore", "google-cloud-storage", "google-cloud-pubsub",
           "google-api-core", "grpcio", "protobuf", "proto-plus", "google-auth")


def test_google_libraries_are_bounded_at_their_next_major_version() -> None:
    """Next after the major we test on (the one installed): `<N`, with N - 1 installed."""
    found = {requirement.name: requirement for requirement in requirements(extras=())}
    problems = []
    for name in BOUNDED:
        requirement = found.get(name)
        if requirement is None:
            problems.append(f"{name}: not a declared dependency")
            continue
        installed = Version(version(name))
        upper = [Version(s.version) for s in requirement.specifier if s.operator == "<"]
        if len(upper) != 1 or upper[0] != Version(f"{installed.major + 1}"):
            problems.append(f"{name} {installed}: {requirement.specifier or 'no bound'} is "
                            f"not bounded at {installed.major + 1}")
        elif installed not in requirement.specifier:
            problems.append(f"{name} {installed}: outside {requirement.specifier}")
    assert problems == []


def test_every_runtime_dependency_has_an_upper_bound_that_admits_the_installed_one() -> None:
    problems = []
    for requirement in requirements(extras=()):
        if not any(spec.operator == "<" for spec in requirement.specifier):
            problems.append(f"{requirement.name}: no upper bound ({requirement.specifier})")
        elif Version(version(requirement.name)) not in requirement.specifier:
            problems.append(f"{requirement.name} {version(requirement.name)}: outside "
                            f"{requirement.specifier}")
    assert problems == []
