"""ReconcilerSpec: the operator's own validation of a CR spec (the CRD schema is the first line;
this one also guards specs applied before a CRD upgrade)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.config import ConfigError, ReconcilerSpec

MINIMAL: dict[str, Any] = {"storage": {"bucket": "reels-bucket"}}


def test_defaults_match_the_crd() -> None:
    spec = ReconcilerSpec.parse(MINIMAL)
    assert (spec.concurrency, spec.rate_limit, spec.settle) == (8, 500.0, timedelta(seconds=30))
    assert spec.settings().concurrency == 8


@pytest.mark.parametrize(("spec", "where"), [
    ({"rateLimit": 0}, "spec.rateLimit"),
    ({"rateLimit": 20_000}, "spec.rateLimit"),
    ({"concurrency": 0}, "spec.concurrency"),
    ({"settle": "soon"}, "spec.settle"),
    ({"surprise": True}, "spec.surprise"),
])
def test_bad_specs_name_the_field(spec: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=rf"invalid {where}\b"):
        ReconcilerSpec.parse({**MINIMAL, **spec})


def test_rate_limit_accepts_fractions() -> None:
    assert ReconcilerSpec.parse({**MINIMAL, "rateLimit": 0.5}).rate_limit == 0.5


def test_stitch_timeout_defaults_to_the_stale_timeout_and_can_be_set() -> None:
    unset = ReconcilerSpec.parse({**MINIMAL, "staleJobs": {"timeout": "10m"}}).settings()
    assert unset.policy.stitch_timeout == timedelta(minutes=10)
    own = ReconcilerSpec.parse({**MINIMAL, "stitchTimeout": "2h"}).settings()
    assert own.policy.stitch_timeout == timedelta(hours=2)
