"""The chart's endpoint values under the security review: the Auth emulator variable cannot
be injected, a proxy in front is trusted only when named, ServiceAccount tokens need an
audience."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.rendering import of_kind, template, template_error


def _args(docs: list[dict[str, object]]) -> list[str]:
    deployment = of_kind(docs, "Deployment")
    [operator] = deployment["spec"]["template"]["spec"]["containers"]
    args: list[str] = operator["args"]
    return args


@pytest.mark.parametrize("value", ["127.0.0.1:9099", ""])
def test_the_emulator_variable_is_refused_in_extra_env(helm: Path, value: str) -> None:
    error = template_error(helm, "--set", "operator.extraEnv[0].name=FIREBASE_AUTH_EMULATOR_HOST",
                           "--set-string", f"operator.extraEnv[0].value={value}")
    assert "extraEnv" in error, error


def test_other_variables_still_pass(helm: Path) -> None:
    docs = template(helm, "--set", "operator.extraEnv[0].name=REEL_PAGE_SIZE",
                    "--set-string", "operator.extraEnv[0].value=500")
    assert of_kind(docs, "Deployment")


def test_no_proxy_is_trusted_unless_named(helm: Path) -> None:
    args = _args(template(helm, "--set", "api.enabled=true"))
    assert not [arg for arg in args if arg.startswith("--api-trusted-proxies")]
    assert "--api-token-audience=reel-reconciler" in args
    named = _args(template(helm, "--set", "api.enabled=true",
                           "--set", "api.trustedProxies={10.0.0.0/8,fd00::/8}"))
    assert "--api-trusted-proxies=10.0.0.0/8,fd00::/8" in named


@pytest.mark.parametrize("setting", ["api.trustedProxies={ingress-nginx}",
                                     "api.tokenAudiences={a b}"])
def test_malformed_endpoint_values_are_refused(helm: Path, setting: str) -> None:
    assert template_error(helm, "--set", "api.enabled=true", "--set", setting)
