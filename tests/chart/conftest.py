"""Fixtures for the chart and image tests: helm from the PyPI wheel, tools from `make tools`."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.emulators import MissingPrerequisite
from devkit.kubectl import KubectlNotFound, find_helm
from tests.support.tools import tool


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return find_helm()
    except KubectlNotFound as exc:
        pytest.fail(f"helm is missing: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def tools() -> dict[str, Path]:
    try:
        return {name: tool(name) for name in ("checkov", "kubernetes-validate", "hadolint")}
    except MissingPrerequisite as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def kube_score() -> Path:
    """Built by `make tools`; its own fixture, so its absence fails only the kube-score tests."""
    try:
        return tool("kube-score")
    except MissingPrerequisite as exc:
        pytest.fail(str(exc), pytrace=False)
