"""The Helm chart, its generated plain manifests and the Dockerfile, checked with real tools."""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from reel_reconciler.operator.main import build_parser
from tests.chart.rendering import ALL_ON, VALUE_SETS, of_kind, render_text, run, template
from tests.support.dockerfile import copies, pip_steps
from tools.manifests import CHART, CRD_COPY, REPO, crd_copies, render

KUBERNETES_VERSIONS = ["1.30.0", "1.33.0", "1.35.0"]


@pytest.mark.parametrize("values", list(VALUE_SETS), ids=list(VALUE_SETS))
def test_helm_lint_strict(helm: Path, values: str) -> None:
    linted = run(helm, "lint", "--strict", CHART, *VALUE_SETS[values])
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_values_schema_rejects_bad_values(helm: Path) -> None:
    for bad in (["--set", "replicaCount=0"], ["--set", "operator.logLevel=LOUD"],
                ["--set", "reconciler.create=true"], ["--set", "nosuchkey=1"],
                ["--set", "podDisruptionBudget.maxUnavailable=0"],
                ["--set", "podDisruptionBudget.unhealthyPodEvictionPolicy=Never"],
                ["--set", "commonLabels.app\\.kubernetes\\.io/name=other"],
                ["--set", "topologySpreadConstraints[0].maxSkew=1"],
                ["--set", "operator.envFrom[0].prefix=X_"],
                ["--set", "fullnameOverride=Not_A_Name"],
                ["--set", "api.rateLimit=lots"], ["--set", "api.reconciler=no-slash"],
                ["--set", "api.corsOrigins[0]=*"],
                ["--set", "operator.workSubscription=reel-work"],
                ["--set", "operator.sweepParallel=0"]):
        out = run(helm, "template", "x", CHART, *bad)
        assert out.returncode != 0, f"{bad} was accepted"
        assert "schema" in out.stderr.lower() or "values don't meet" in out.stderr, out.stderr


def test_optional_features_render_only_when_asked(helm: Path) -> None:
    default_kinds = {d["kind"] for d in template(helm)}
    assert {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ReelReconciler",
            "ClusterKopfPeering", "KopfPeering"}.isdisjoint(default_kinds)
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole",
            "ClusterRoleBinding", "Service", "ConfigMap", "PodDisruptionBudget"} <= default_kinds
    without_pdb = {d["kind"] for d in template(helm, "--set", "podDisruptionBudget.enabled=false")}
    assert "PodDisruptionBudget" not in without_pdb
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


def test_the_endpoint_renders_only_when_enabled_and_its_args_parse(helm: Path) -> None:
    default = template(helm)
    assert not [d for d in default if "auth-delegator" in d["metadata"]["name"]]
    assert "api" not in json.dumps(of_kind(default, "Service")["spec"]["ports"])
    docs = template(helm, *ALL_ON)
    container = of_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "api", "containerPort": 8090, "protocol": "TCP"} in container["ports"]
    assert {"name": "api", "port": 8090, "targetPort": "api", "protocol": "TCP"} in (
        of_kind(docs, "Service")["spec"]["ports"])
    args = build_parser().parse_args(container["args"])
    assert (args.api_port, args.api_reconciler, args.api_cors_origin, args.api_token_audience) \
        == (8090, "reels/reel-maker", ["https://reels.example.com"], ["reel-reconciler"])
    [delegator] = [d for d in docs if d["kind"] == "ClusterRoleBinding"
                   and d["roleRef"]["name"] == "system:auth-delegator"]
    assert delegator["subjects"][0]["name"] == "reel-reconciler"
    [caller] = [d for d in docs if d["kind"] == "ClusterRole"
                and d["metadata"]["name"].endswith("-caller")]
    assert caller["rules"] == [{"apiGroups": ["reelmaker.io"],
                                "resources": ["reelreconcilers/reconcile"], "verbs": ["update"]}]
    ingress = of_kind(docs, "NetworkPolicy")["spec"]["ingress"]
    assert any(rule["ports"] == [{"port": "api", "protocol": "TCP"}] and rule.get("from")
               for rule in ingress)


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
    assert container["resources"]["limits"]
    assert container["resources"]["requests"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "--standalone" in container["args"]
    assert "--all-namespaces" in container["args"]
    [ha] = [d for d in template(helm, *ALL_ON) if d["kind"] == "Deployment"]
    ha_args = ha["spec"]["template"]["spec"]["containers"][0]["args"]
    assert ha["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--peering=reel-reconciler" in ha_args
    assert "--namespace=a" in ha_args


def test_crd_comes_from_the_single_source(helm: Path) -> None:
    crds = {d["metadata"]["name"]: d for d in template(helm)
            if d["kind"] == "CustomResourceDefinition"}
    source = yaml.safe_load((REPO / "deploy/crds/reelreconcilers.reelmaker.io.yaml").read_text())
    assert crds["reelreconcilers.reelmaker.io"] == source
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= set(crds)


def test_chart_crds_are_a_copy_of_deploy_crds() -> None:
    """A real directory (a symlink leaves the chart when packaged or scanned on its own),
    kept equal to deploy/crds by `make manifests`."""
    assert CRD_COPY.is_dir(), f"{CRD_COPY} must be a directory"
    assert not CRD_COPY.is_symlink(), f"{CRD_COPY} must be a directory"
    copies = crd_copies()
    present = {str(path.relative_to(REPO)) for path in CRD_COPY.iterdir()}
    assert present == set(copies), "chart crds/ and deploy/crds differ: run `make manifests`"
    for path, text in copies.items():
        assert (REPO / path).read_text() == text, f"{path} drifted: run `make manifests`"


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


@pytest.mark.parametrize("names", [[], ["--set", "fullnameOverride=rr"]], ids=["default", "rr"])
def test_down_alert_selects_the_job_the_service_monitor_sets(helm: Path,
                                                             names: list[str]) -> None:
    """The chart owns the job label (a relabeling), so the alert needs no name pattern."""
    docs = template(helm, *ALL_ON, *names)
    [endpoint] = of_kind(docs, "ServiceMonitor")["spec"]["endpoints"]
    [job] = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    [down] = [r for g in of_kind(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]
              if r.get("alert") == "ReelReconcilerDown"]
    selector = f'up{{job="{job}"}}'
    assert selector in down["expr"], down["expr"]
    assert f"absent({selector})" in down["expr"], down["expr"]
    assert "=~" not in down["expr"], down["expr"]


@pytest.mark.parametrize("values", list(VALUE_SETS), ids=list(VALUE_SETS))
def test_rendered_output_validates_for_supported_kubernetes(helm: Path, tools: dict[str, Path],
                                                             values: str,
                                                             tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(render_text(helm, *VALUE_SETS[values]))
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
    rendered.write_text(render_text(helm, *VALUE_SETS[values]))
    scanned = run(tools["checkov"], "-f", rendered, "--framework", "kubernetes", "--compact",
                  "--quiet", "--skip-download", "-o", "json", cwd=tmp_path)
    report = json.loads(scanned.stdout)
    summary = report["summary"]
    assert summary["failed"] == 0, json.dumps(report["results"]["failed_checks"], indent=1)
    assert summary["passed"] > 50


def test_checkov_scans_the_chart_directory(helm: Path, tools: dict[str, Path]) -> None:
    """`checkov -d charts/reel-reconciler --framework helm`, the command a reviewer runs:
    checkov renders the chart itself (default values, namespace "default") with the helm
    on PATH. --skip-download only stops it calling its vendor's API (unreachable in CI)."""
    env = {**os.environ, "PATH": f"{helm.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("HELM_NAMESPACE", None)  # checkov passes CKV_K8S_21 when it is set: test the plain run
    scanned = run(tools["checkov"], "-d", "charts/reel-reconciler", "--framework", "helm",
                  "-o", "json", "--skip-download", env=env, timeout=600)
    assert scanned.stdout.strip(), f"checkov printed nothing:\n{scanned.stderr[-3000:]}"
    report = json.loads(scanned.stdout)
    [helm_report] = report if isinstance(report, list) else [report]
    assert helm_report.get("check_type") == "helm", (
        f"checkov scanned no chart (is helm runnable?):\n{scanned.stderr[-3000:]}")
    summary = helm_report["summary"]
    failed = helm_report["results"]["failed_checks"]
    assert summary["failed"] == 0, json.dumps(
        [(c["check_id"], c["resource"], c["check_name"]) for c in failed], indent=1)
    assert summary["passed"] > 0, summary


@pytest.mark.parametrize("values", list(VALUE_SETS), ids=list(VALUE_SETS))
def test_kube_score_passes(helm: Path, kube_score: Path, values: str, tmp_path: Path) -> None:
    """Every finding is fixed or ignored on its object with a `kube-score/ignore` annotation
    and a comment saying why; warnings count as failures."""
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(render_text(helm, *VALUE_SETS[values]))
    scored = run(kube_score, "score", "--output-format", "ci", "--exit-one-on-warning", rendered)
    findings = [line for line in scored.stdout.splitlines()
                if line.startswith(("[CRITICAL]", "[WARNING]"))]
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert not findings, scored.stdout + scored.stderr
    assert any(line.startswith("[OK]") for line in scored.stdout.splitlines()), scored.stdout
    text = rendered.read_text()
    justified = {check.strip() for ids in re.findall(r"# kube-score ([a-z, -]+):", text)
                 for check in ids.split(",")}
    for doc in yaml.safe_load_all(text):
        ignored = ((doc or {}).get("metadata", {}).get("annotations") or {}).get(
            "kube-score/ignore", "")
        unexplained = {check for check in ignored.split(",") if check} - justified
        assert not unexplained, f"{doc['kind']}: no `# kube-score ID: why` for {unexplained}"


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
    """The Dockerfile's pip commands as written, without Docker: the build stage's with this
    Python, the final stage's in a clean venv, paths in the image mapped to temporary ones.
    No extra: a plain install of the runtime lock must run the operator (kopf is a core
    dependency)."""
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    in_image = {"/wheels": str(wheels), **{dest: str(REPO / src)
                                           for dest, src in copies().items()}}

    def here(arg: str) -> str:
        """An argument with the image's paths mapped to this machine's."""
        option, equals, value = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
        return (option + equals + in_image.get(value, value)).replace("${VERSION}", version)

    steps = pip_steps()
    final = max(step.stage for step in steps)
    for step in steps:
        argv = [here(arg) for arg in step.argv[1:]]
        pip = [venv / "bin" / "pip"] if step.stage == final else [sys.executable, "-m", "pip"]
        ran = run(*pip, "--quiet", *argv, timeout=600)
        assert ran.returncode == 0, f"{' '.join(step.argv)}: {ran.stderr[-3000:]}"
    assert list(wheels.glob("reel_reconciler-*.whl"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for args in (["--version"], ["operator", "--help"], ["sweep", "--help"]):
        ran = run(venv / "bin" / "reel-reconciler", *args, env=env, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
    imported = run(venv / "bin" / "python", "-c",
                   "import reel_reconciler.operator.handlers, tests", env=env, cwd=tmp_path)
    assert "No module named 'tests'" in imported.stderr, "tests must not ship in the image"
