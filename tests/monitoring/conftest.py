"""What the monitoring tests share: promtool, which fails the test when missing, never skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.monitoring.promserver import MissingPrometheus, binary


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return binary("promtool")
    except MissingPrometheus as exc:
        pytest.fail(f"missing prerequisite: {exc}", pytrace=False)
