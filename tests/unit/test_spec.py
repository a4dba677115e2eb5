"""ReconcilerSpec: the operator's own validation of a CR spec (the CRD schema is the first line;
this one also guards specs applied before a CRD upgrade)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml

from reel_reconciler.config import ConfigError
from reel_reconciler.engine.listener import WatchdogSettings
from reel_reconciler.model import PolicySettings
from reel_reconciler.spec import ReconcilerSpec
from tests.conftest import REPO

CRD = REPO / "deploy" / "crds" / "reelreconcilers.reelmaker.io.yaml"

MINIMAL: dict[str, Any] = {"storage": {"bucket": "reels-bucket"}}


def _crd_defaults(schema: dict[str, Any], path: tuple[str, ...] = ()
                  ) -> dict[tuple[str, ...], Any]:
    """Every leaf default of the CRD's spec schema, by its path of field names."""
    found: dict[tuple[str, ...], Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if "properties" in prop:
            found.update(_crd_defaults(prop, (*path, name)))
        elif "default" in prop:
            found[(*path, name)] = prop["default"]
    return found


def _leaves(value: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if not isinstance(value, dict):
        return {path: value}
    found: dict[tuple[str, ...], Any] = {}
    for name, inner in value.items():
        found.update(_leaves(inner, (*path, name)))
    return found


def test_every_default_of_the_spec_is_the_crds() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    declared = _crd_defaults(schema)
    spec: dict[str, Any] = {}
    for path, value in declared.items():
        target = spec
        for name in path[:-1]:
            target = target.setdefault(name, {})
        target[path[-1]] = value
    spec["storage"] = {**spec.get("storage", {}), **MINIMAL["storage"]}
    assert ReconcilerSpec.parse(spec) == ReconcilerSpec.parse(MINIMAL)
    ours = _leaves(ReconcilerSpec.parse(MINIMAL).model_dump(by_alias=True, exclude_none=True))
    assert set(ours) - {("storage", "bucket")} == set(declared)


def test_the_engine_and_the_cli_take_the_specs_defaults() -> None:
    spec = ReconcilerSpec.parse(MINIMAL)
    settings = spec.settings()
    assert (settings.concurrency, settings.settle, settings.stale_timeout) == (
        spec.concurrency, spec.settle, spec.stale_jobs.timeout)
    watchdog = WatchdogSettings()
    assert (watchdog.heartbeat_interval, watchdog.silence_threshold,
            watchdog.resubscribe_every) == (
        spec.listeners.heartbeat_interval.total_seconds(),
        spec.listeners.silence_threshold.total_seconds(),
        spec.listeners.resubscribe_interval.total_seconds())
    policy = PolicySettings(location=settings.location)
    assert (policy.stale_after, policy.settle) == (spec.stale_jobs.timeout, spec.settle)


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
