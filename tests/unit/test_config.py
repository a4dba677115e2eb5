"""Settings input errors: every timeout and interval more than 0 (the settle window may be
0), and one line naming the flag, the environment variable or the spec field to fix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from reel_reconciler.config import (
    ConfigError,
    Settings,
    check_emulator_hosts,
    load_settings,
    parse_duration,
)
from reel_reconciler.spec import ReconcilerSpec

MINIMAL: dict[str, Any] = {"storage": {"bucket": "reels-bucket"}}
EMULATOR_VARS = ("STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: a bucket, no REEL_* value and no emulator address."""
    for name in ("REEL_STALE_TIMEOUT", "REEL_SETTLE", "REEL_STITCH_TIMEOUT",
                 "REEL_OPT_OUT_FIELD", "REEL_FLAP_CORRECTIONS", "REEL_FLAP_WINDOW",
                 "REEL_FLAP_HOLD", *EMULATOR_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REEL_BUCKET", "reels-bucket")


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400), (" 2s ", 2),
])
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(("text", "problem"), [
    ("banana", "not a duration such as 30s, 5m or 1h"),
    ("", "not a duration"),
    ("5", "needs a unit, e.g. 5s, 5m or 5h"),
    ("0s", "must be more than 0"),
    ("0", "must be more than 0"),
    ("-5", "must be more than 0"),
    ("-1m", "must be more than 0"),
])
def test_timeouts_and_intervals_are_positive_durations(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_duration(text)


def test_a_window_may_be_zero_but_not_negative() -> None:
    assert parse_duration("0s", allow_zero=True) == timedelta(0)
    with pytest.raises(ValueError, match="must be 0s"):
        parse_duration("-1s", allow_zero=True)


def _error(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_bad_flag_is_named_as_the_flag() -> None:
    assert _error(stale_timeout="banana") == (
        "invalid --stale-timeout 'banana': not a duration such as 30s, 5m or 1h")
    assert _error(stitch_timeout="0s").startswith("invalid --stitch-timeout '0s': must be more")


def test_a_bad_environment_variable_is_named_as_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REEL_STALE_TIMEOUT", "banana")
    assert _error() == (
        "invalid REEL_STALE_TIMEOUT 'banana': not a duration such as 30s, 5m or 1h")
    monkeypatch.setenv("REEL_STALE_TIMEOUT", "0s")
    assert _error().startswith("invalid REEL_STALE_TIMEOUT '0s': must be more than 0")
    monkeypatch.setenv("REEL_STALE_TIMEOUT", "5m")
    monkeypatch.setenv("REEL_SETTLE", "-1s")
    assert _error().startswith("invalid REEL_SETTLE '-1s': must be 0s")


def test_settle_zero_means_no_window(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(settle="0s").settle == timedelta(0)
    monkeypatch.setenv("REEL_SETTLE", "0s")
    assert load_settings().settle == timedelta(0)
    assert ReconcilerSpec.parse({**MINIMAL, "settle": "0s"}).settle == timedelta(0)


@pytest.mark.parametrize(("part", "where"), [
    ({"sweep": {"interval": "0s"}}, "spec.sweep.interval"),
    ({"staleJobs": {"interval": "0s"}}, "spec.staleJobs.interval"),
    ({"staleJobs": {"timeout": "0m"}}, "spec.staleJobs.timeout"),
    ({"listeners": {"heartbeatInterval": "0s"}}, "spec.listeners.heartbeatInterval"),
    ({"listeners": {"silenceThreshold": "0s"}}, "spec.listeners.silenceThreshold"),
    ({"listeners": {"resubscribeInterval": "0s"}}, "spec.listeners.resubscribeInterval"),
])
def test_spec_intervals_and_timeouts_are_positive(part: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ReconcilerSpec.parse({**MINIMAL, **part})
    assert str(caught.value).startswith(f"invalid {where} '0")
    assert "must be more than 0" in str(caught.value)


def test_a_missing_spec_field_is_named_without_a_value() -> None:
    with pytest.raises(ConfigError, match=r"^invalid spec\.storage: field required$"):
        ReconcilerSpec.parse({})


@pytest.mark.parametrize(("env", "message"), [
    ({"STORAGE_EMULATOR_HOST": "127.0.0.1:9023"},
     "invalid STORAGE_EMULATOR_HOST '127.0.0.1:9023': include the scheme, "
     "e.g. STORAGE_EMULATOR_HOST=http://127.0.0.1:9023"),
    ({"FIRESTORE_EMULATOR_HOST": "http://127.0.0.1:8080"},
     "invalid FIRESTORE_EMULATOR_HOST 'http://127.0.0.1:8080': give host:port without a "
     "scheme, e.g. FIRESTORE_EMULATOR_HOST=127.0.0.1:8080"),
    ({"FIRESTORE_EMULATOR_HOST": "localhost:8080/"},
     "invalid FIRESTORE_EMULATOR_HOST 'localhost:8080/': give host:port without a "
     "scheme, e.g. FIRESTORE_EMULATOR_HOST=localhost:8080"),
])
def test_emulator_hosts_in_the_wrong_spelling(env: dict[str, str], message: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as caught:
        check_emulator_hosts(env)
    assert str(caught.value) == message
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _error() == message


def test_emulator_hosts_in_the_right_spelling() -> None:
    check_emulator_hosts({"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9023",
                          "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"})
    check_emulator_hosts({"STORAGE_EMULATOR_HOST": "https://gcs.example:443"})
    check_emulator_hosts({})


def test_bare_field_names_in_the_environment_are_someone_elses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """DATABASE or BUCKET set for another program must not move the reconciler."""
    monkeypatch.setenv("DATABASE", "not-ours")
    monkeypatch.setenv("CONCURRENCY", "99")
    monkeypatch.setenv("REEL_BUCKET", "reels")
    settings = Settings()
    assert settings.database == "(default)"
    assert settings.concurrency == 8
    assert settings.bucket == "reels"


@pytest.mark.parametrize(("name", "problem"), [
    ("a.b", "a top-level field name"),
    ("", "a top-level field name"),
    ("9lives", "a top-level field name"),
    ("x" * 129, "a top-level field name"),
    ("status", "status is a field of the project already"),
    ("lastReconciliation", "lastReconciliation is a field of the project already"),
])
def test_the_opt_out_field_is_a_name_of_its_own(name: str, problem: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert _error(opt_out_field=name).startswith(f"invalid --opt-out-field {name!r}: {problem}")
    with pytest.raises(ConfigError, match=rf"^invalid spec\.optOutField .*{problem}"):
        ReconcilerSpec.parse({**MINIMAL, "optOutField": name})
    if name:
        monkeypatch.setenv("REEL_OPT_OUT_FIELD", name)
        assert _error().startswith(f"invalid REEL_OPT_OUT_FIELD {name!r}: {problem}")


def test_the_opt_out_field_reaches_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().policy.opt_out_field == "reconcilerOptOut"
    monkeypatch.setenv("REEL_OPT_OUT_FIELD", "keepOff")
    assert load_settings().policy.opt_out_field == "keepOff"
    assert load_settings(opt_out_field="handsOff").policy.opt_out_field == "handsOff"
    spec = ReconcilerSpec.parse({**MINIMAL, "optOutField": "noReconciler"})
    assert spec.settings().policy.opt_out_field == "noReconciler"


def test_flapping_settings_reach_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_settings().policy
    assert (policy.flap_corrections, policy.flap_window, policy.flap_hold) == (
        2, timedelta(hours=1), timedelta(hours=1))
    monkeypatch.setenv("REEL_FLAP_HOLD", "2h")
    policy = load_settings(flap_corrections="3", flap_window="10m").policy
    assert (policy.flap_corrections, policy.flap_window, policy.flap_hold) == (
        3, timedelta(minutes=10), timedelta(hours=2))
    spec = ReconcilerSpec.parse({**MINIMAL, "flapping": {"corrections": 4, "hold": "5m"}})
    policy = spec.settings().policy
    assert (policy.flap_corrections, policy.flap_window, policy.flap_hold) == (
        4, timedelta(hours=1), timedelta(minutes=5))


@pytest.mark.parametrize(("flag", "value", "problem"), [
    ("flap_corrections", "0", "greater than or equal to 1"),
    ("flap_corrections", "101", "less than or equal to 100"),
    ("flap_window", "0s", "must be more than 0"),
    ("flap_hold", "0s", "must be more than 0"),
])
def test_flapping_cannot_be_turned_off(flag: str, value: str, problem: str) -> None:
    """No setting turns the safety rule off: a hold of 0 or no count at all is refused."""
    assert problem in _error(**{flag: value})
    spec = {"corrections": int(value)} if flag == "flap_corrections" else {
        flag.removeprefix("flap_"): value}
    with pytest.raises(ConfigError, match=r"^invalid spec\.flapping\."):
        ReconcilerSpec.parse({**MINIMAL, "flapping": spec})
