"""The chart README's way to upgrade the CRDs, which Helm installs once and never upgrades,
run against a CRD Helm installed in the real kube-apiserver."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.kubectl import find_helm, find_kubectl
from tests.cluster.fixtures import api_client
from tests.support.harness import REPO

pytestmark = pytest.mark.cluster


def test_documented_crd_upgrade_applies_over_a_helm_installed_crd(
        kube_cluster: Any, tmp_path: Path) -> None:
    """Helm installs crds/ once and never upgrades them; the chart README's command does.
    Helm applies the CRD server-side as its own field manager, so a plain server-side apply
    of a changed CRD conflicts: the README's command takes the fields over. (A copy of the
    chart's CRD under a group of its own, so the real one is left alone.)"""
    readme = (REPO / "charts/reel-reconciler/README.md").read_text()
    command = "kubectl apply --server-side --force-conflicts -f charts/reel-reconciler/crds/"
    assert command in readme
    group = f"t{uuid.uuid4().hex[:6]}.reelmaker.io"
    source = (REPO / "charts/reel-reconciler/crds/reelreconcilers.reelmaker.io.yaml").read_text()
    chart = tmp_path / "chart"
    (chart / "crds").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: crds-only\nversion: 0.1.0\n")
    (chart / "crds" / "crd.yaml").write_text(source.replace("reelmaker.io", group))
    admin = ["--kubeconfig", str(kube_cluster.kubeconfig)]
    release = f"crd{uuid.uuid4().hex[:6]}"
    installed = subprocess.run([str(find_helm()), "install", release, str(chart),
                                "--namespace", "default", *admin],
                               capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr
    crd_name = f"reelreconcilers.{group}"
    upgraded = yaml.safe_load((chart / "crds" / "crd.yaml").read_text())
    upgraded["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = "v2"
    (tmp_path / "upgrade").mkdir()
    (tmp_path / "upgrade" / "crd.yaml").write_text(yaml.safe_dump(upgraded))
    kubectl = [str(find_kubectl()), *admin]
    extensions = client.ApiextensionsV1Api(api_client(kube_cluster))
    try:
        plain = subprocess.run([*kubectl, "apply", "--server-side", "-f",
                                str(tmp_path / "upgrade")],
                               capture_output=True, text=True, check=False)
        assert plain.returncode != 0, plain.stderr
        assert "conflict" in plain.stderr, plain.stderr
        flags = command.removeprefix("kubectl ").removesuffix("charts/reel-reconciler/crds/")
        documented = subprocess.run([*kubectl, *flags.split(), str(tmp_path / "upgrade")],
                                    capture_output=True, text=True, check=False)
        assert documented.returncode == 0, documented.stderr
        schema = extensions.read_custom_resource_definition(crd_name).spec.versions[0].schema
        assert schema.open_apiv3_schema.description == "v2"
    finally:
        subprocess.run([str(find_helm()), "uninstall", release, "--namespace", "default",
                        *admin], capture_output=True, check=False)
        extensions.delete_custom_resource_definition(crd_name)
