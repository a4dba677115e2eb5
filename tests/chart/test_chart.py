"""The Helm chart, its generated plain manifests and the Dockerfile, checked with real tools."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.manifests import CHART, REPO, render

ALL_ON = [
    "--set", "replicaCount=2", "--set", "serviceMonitor.enabled=true",
    "--set", "prometheusRule.enabled=true", "--set", "networkPolicy.enabled=true",
    "--set", "podDisruptionBudget.enabled=true", "--set", "reconciler.create=true",
    "--set", "reconciler.spec.storage.bucket=my-reels", "--set", "watchNamespaces={a,b}",
    "--set", "serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account="
    "rr@p.iam.gserviceaccount.com",
]
VALUE_SETS = {"defaults": [], "all-features": ALL_ON}
KUBERNETES_VERSIONS = ["1.30.0", "1.33.0", "1.35.0"]


def run(*argv: str | Path, cwd: Path = REPO, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False,
                          cwd=cwd, **kw)


def template(helm: Path, *args: str) -> list[dict[str, Any]]:
    out = run(helm, "template", "reel-reconciler", CHART, "-n", "reel-reconciler",
              "--include-crds", *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.mark.parametrize("values", list(VALUE_SETS), ids=list(VALUE_SETS))
def test_helm_lint_strict(helm: Path, values: str) -> None:
    linted = run(helm, "lint", "--strict", CHART, *VALUE_SETS[values])
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_values_schema_rejects_bad_values(helm: Path) -> None:
    for bad in (["--set", "replicaCount=0"], ["--set", "operator.logLevel=LOUD"],
                ["--set", "reconciler.create=true"], ["--set", "nosuchkey=1"]):
        out = run(helm, "template", "x", CHART, *bad)
        assert out.returncode != 0, f"{bad} was accepted"
        assert "schema" in out.stderr.lower() or "values don't meet" in out.stderr, out.stderr


def test_optional_features_render_only_when_asked(helm: Path) -> None:
    default_kinds = {d["kind"] for d in template(helm)}
    assert {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget",
            "ReelReconciler", "ClusterKopfPeering", "KopfPeering"}.isdisjoint(default_kinds)
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole",
            "ClusterRoleBinding", "Service", "ConfigMap"} <= default_kinds
    all_kinds = [d["kind"] for d in template(helm, *ALL_ON)]
    for kind in ("ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget",
                 "ReelReconciler"):
        assert kind in all_kinds
    assert all_kinds.count("KopfPeering") == 2  # one per watched namespace
    auto = {d["kind"] for d in template(helm, "--api-versions",
                                         "monitoring.coreos.com/v1/ServiceMonitor",
                                         "--api-versions",
                                         "monitoring.coreos.com/v1/PrometheusRule")}
    assert {"ServiceMonitor", "PrometheusRule"} <= auto


def test_deployment_is_hardened(helm: Path) -> None:
    [deployment] = [d for d in template(helm) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "--standalone" in container["args"] and "--all-namespaces" in container["args"]
    [ha] = [d for d in template(helm, *ALL_ON) if d["kind"] == "Deployment"]
    ha_args = ha["spec"]["template"]["spec"]["containers"][0]["args"]
    assert ha["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--peering=reel-reconciler" in ha_args and "--namespace=a" in ha_args


def test_crd_comes_from_the_single_source(helm: Path) -> None:
    crds = {d["metadata"]["name"]: d for d in template(helm)
            if d["kind"] == "CustomResourceDefinition"}
    source = yaml.safe_load((REPO / "deploy/crds/reelreconcilers.reelmaker.io.yaml").read_text())
    assert crds["reelreconcilers.reelmaker.io"] == source
    assert (CHART / "crds").resolve() == (REPO / "deploy" / "crds").resolve()


def test_dashboard_and_rules_are_packaged(helm: Path) -> None:
    docs = template(helm, *ALL_ON)
    [config_map] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"]["grafana_folder"] == "Reel Maker"
    dashboard = json.loads(config_map["data"]["reel-reconciler.json"])
    assert dashboard["panels"], "the dashboard has no panels"
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 6


@pytest.mark.parametrize("values", list(VALUE_SETS), ids=list(VALUE_SETS))
def test_rendered_output_validates_for_supported_kubernetes(helm: Path, tools: dict[str, Path],
                                                             values: str,
                                                             tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    out = run(helm, "template", "reel-reconciler", CHART, "-n", "reel-reconciler",
              *VALUE_SETS[values])
    assert out.returncode == 0, out.stderr
    rendered.write_text(out.stdout)
    for version in KUBERNETES_VERSIONS:
        # ServiceMonitor, PrometheusRule, ReelReconciler and peering kinds have no
        # published schema (a warning); --strict applies to every built-in kind.
        checked = run(tools["kubernetes-validate"], "--strict", "-k", version, rendered)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        passed = checked.stdout.count("passed for resource")
        assert passed >= 6, checked.stdout


@pytest.mark.parametrize("values", list(VALUE_SETS), ids=list(VALUE_SETS))
def test_checkov_finds_no_failed_check(helm: Path, tools: dict[str, Path], values: str,
                                       tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    out = run(helm, "template", "reel-reconciler", CHART, "-n", "reel-reconciler",
              *VALUE_SETS[values])
    rendered.write_text(out.stdout)
    scanned = run(tools["checkov"], "-f", rendered, "--framework", "kubernetes", "--compact",
                  "--quiet", "--skip-download", "-o", "json", cwd=tmp_path)
    report = json.loads(scanned.stdout)
    summary = report["summary"]
    assert summary["failed"] == 0, json.dumps(report["results"]["failed_checks"], indent=1)
    assert summary["passed"] > 50


def test_plain_manifests_match_the_chart(helm: Path) -> None:
    for path, text in render(helm).items():
        assert (REPO / path).read_text() == text, f"{path} drifted: run `make manifests`"


def test_dockerfile_passes_hadolint(tools: dict[str, Path]) -> None:
    linted = run(tools["hadolint"], "Dockerfile")
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_dockerfile_version_matches_the_package() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG VERSION={version}" in (REPO / "Dockerfile").read_text()


def test_image_install_steps_work_in_a_fresh_venv(tmp_path: Path) -> None:
    """The Dockerfile's two stages without Docker: wheels from the project, then an
    offline install of exactly those wheels into a clean environment."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r'pip wheel .*--wheel-dir /wheels "\.\[operator\]"', dockerfile)
    assert re.search(r'pip install --no-index --find-links=/wheels', dockerfile)
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    built = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", wheels,
                ".[operator]", timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert list(wheels.glob("reel_reconciler-*.whl"))
    run(sys.executable, "-m", "venv", venv)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    installed = run(venv / "bin" / "pip", "install", "--quiet", "--no-index",
                    f"--find-links={wheels}", f"reel-reconciler[operator]=={version}",
                    timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for args in (["--version"], ["operator", "--help"], ["sweep", "--help"]):
        ran = run(venv / "bin" / "reel-reconciler", *args, env=env, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
    imported = run(venv / "bin" / "python", "-c",
                   "import controller.operator.handlers, tests", env=env, cwd=tmp_path)
    assert "No module named 'tests'" in imported.stderr, "tests must not ship in the image"
