"""ReconcilerSpec: the operator's own validation of a CR spec (the CRD schema is the first line;
this one also guards specs applied before a CRD upgrade)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from reel_reconciler import cli, defaults
from reel_reconciler.config import ConfigError, Settings
from reel_reconciler.engine.listener import WatchdogSettings
from reel_reconciler.model import PolicySettings
from reel_reconciler.spec import DistributionSpec, ReconcilerSpec
from tests.conftest import REPO

CRDS = [REPO / "charts" / "reel-reconciler" / "crds" / "reelreconcilers.reelmaker.io.yaml",
        REPO / "deploy" / "crds" / "reelreconcilers.reelmaker.io.yaml"]

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


def crd_mismatches(crd: Path) -> list[str]:
    """Where the CRD's defaults and reel_reconciler.defaults part: a default only one of them
    has, or two values that differ once read the way the operator reads a spec."""
    schema = yaml.safe_load(crd.read_text())["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"]["properties"]["spec"]
    declared = _crd_defaults(schema)
    spec: dict[str, Any] = {}
    for path, value in declared.items():
        target = spec
        for name in path[:-1]:
            target = target.setdefault(name, {})
        target[path[-1]] = value
    spec["storage"] = {**spec.get("storage", {}), **MINIMAL["storage"]}
    dump = {"by_alias": True, "exclude_none": True}
    theirs = _leaves(ReconcilerSpec.parse(spec).model_dump(**dump))
    ours = _leaves(ReconcilerSpec.parse(MINIMAL).model_dump(**dump))
    problems = [f"{'.'.join(path)}: the CRD has no default, defaults.py says {ours[path]}"
                for path in sorted(set(ours) - set(declared) - {("storage", "bucket")})]
    problems += [f"{'.'.join(path)}: the CRD says {declared[path]!r}, defaults.py {ours.get(path)}"
                 for path in sorted(declared) if theirs.get(path) != ours.get(path)]
    return problems


@pytest.fixture
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment; these tests are about the defaults alone."""
    for name in list(os.environ):
        if name.startswith("REEL_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("crd", CRDS, ids=["chart", "deploy"])
def test_every_default_of_the_crd_is_defaults_py(crd: Path) -> None:
    assert crd_mismatches(crd) == []


@pytest.mark.usefixtures("no_environment")
def test_settings_take_the_specs_defaults() -> None:
    """Settings made with nothing but a bucket, against a spec made with nothing but a bucket:
    neither passes values to the other."""
    settings = Settings(bucket="reels-bucket")
    spec = ReconcilerSpec.parse(MINIMAL)
    assert (settings.concurrency, settings.settle, settings.stale_timeout,
            settings.max_destructive, settings.destructive_window, settings.opt_out_field,
            settings.flap_corrections, settings.flap_window, settings.flap_hold,
            settings.database, settings.root_prefix, settings.projects_collection,
            settings.jobs_collection) == (
        spec.concurrency, spec.settle, spec.stale_jobs.timeout,
        spec.safety.max_destructive, spec.safety.window, spec.opt_out_field,
        spec.flapping.corrections, spec.flapping.window, spec.flapping.hold,
        spec.firestore.database, spec.storage.root_prefix, spec.firestore.projects_collection,
        spec.firestore.jobs_collection)
    watchdog = WatchdogSettings()
    assert (watchdog.heartbeat_interval, watchdog.silence_threshold,
            watchdog.resubscribe_every) == (
        spec.listeners.heartbeat_interval.total_seconds(),
        spec.listeners.silence_threshold.total_seconds(),
        spec.listeners.resubscribe_interval.total_seconds())
    policy = PolicySettings(location=settings.location)
    assert (policy.stale_after, policy.settle) == (spec.stale_jobs.timeout, spec.settle)


_SETTINGS_WITH_DEFAULTS = sorted(
    name for name, info in Settings.model_fields.items()
    if info.get_default(call_default_factory=True) is not None)


@pytest.mark.usefixtures("no_environment")
@pytest.mark.parametrize("field", _SETTINGS_WITH_DEFAULTS)
def test_settings_have_no_default_of_their_own(field: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Each default of Settings is the one of the same name in defaults.py, read when the
    Settings are made."""
    name = field.upper()
    assert hasattr(defaults, name), f"defaults.py has no {name} for Settings.{field}"
    sentinel = _another(getattr(defaults, name))
    monkeypatch.setattr(defaults, name, sentinel)
    assert getattr(Settings(bucket="reels-bucket"), field) == sentinel


def _another(value: object) -> object:
    """A valid value of the same kind that no default has."""
    if isinstance(value, timedelta):
        return value + timedelta(seconds=7)
    if isinstance(value, bool):
        raise TypeError("no boolean setting is expected")
    if isinstance(value, int | float):
        return value - 1 if value > 1 else value + 1
    return f"{value}Elsewhere"


@pytest.mark.usefixtures("no_environment")
def test_one_default_changed_in_defaults_py_reaches_everything(
        monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """The one source: the CLI's help, Settings and the spec follow defaults.py, so the CRD
    comparison then finds the CRD behind."""
    monkeypatch.setattr(defaults, "CONCURRENCY", 11)
    monkeypatch.setattr(defaults, "SWEEP_INTERVAL", timedelta(minutes=45))
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    assert "REEL_CONCURRENCY or 11)" in " ".join(capfd.readouterr().out.split())
    with pytest.raises(SystemExit):
        cli.main(["watch", "--help"])
    assert "swept this often (default: 45m)" in " ".join(capfd.readouterr().out.split())
    assert Settings(bucket="reels-bucket").concurrency == 11
    assert crd_mismatches(CRDS[0]) == [
        "concurrency: the CRD says 8, defaults.py 11",
        "sweep.interval: the CRD says '30m', defaults.py 0:45:00"]


@pytest.mark.parametrize(("spec", "where"), [
    ({"rateLimit": 0}, "spec.rateLimit"),
    ({"rateLimit": 20_000}, "spec.rateLimit"),
    ({"concurrency": 0}, "spec.concurrency"),
    ({"settle": "soon"}, "spec.settle"),
    ({"surprise": True}, "spec.surprise"),
    ({"sweep": {"distribution": {"topic": "projects/p/subscriptions/s",
                                 "subscription": "projects/p/subscriptions/s"}}},
     "spec.sweep.distribution.topic"),
    ({"sweep": {"distribution": {"topic": "projects/p/topics/t"}}},
     "spec.sweep.distribution.subscription"),
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


def test_the_crd_checks_the_distribution_as_the_spec_does() -> None:
    """The same two resource names, with the same patterns, in the CRD and in spec.py."""
    sweep = yaml.safe_load(CRDS[0].read_text())["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"]["properties"]["spec"]["properties"]["sweep"]
    distribution = sweep["properties"]["distribution"]
    assert sorted(distribution["required"]) == ["subscription", "topic"]
    fields = DistributionSpec.model_fields
    for name in ("topic", "subscription"):
        pattern = next(m.pattern for m in fields[name].metadata if hasattr(m, "pattern"))
        assert distribution["properties"][name]["pattern"] == pattern
    parsed = ReconcilerSpec.parse({**MINIMAL, "sweep": {"distribution": {
        "topic": "projects/p/topics/t", "subscription": "projects/p/subscriptions/s"}}})
    assert parsed.sweep.distribution == DistributionSpec(
        topic="projects/p/topics/t", subscription="projects/p/subscriptions/s")
    assert ReconcilerSpec.parse(MINIMAL).sweep.distribution is None, "off by default"
