"""`helm install` into the real kube-apiserver, then the operator exactly as the chart's
Deployment would run it (its args and env), authenticated as the chart's ServiceAccount with
the chart's RBAC, reconciles a stuck project end to end. (No kubelet runs here, so the pod
itself is this local process.)"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devkit.emulators import Emulators
from devkit.kubectl import find_helm
from devkit.seed import World
from tests.cluster.fixtures import api_client
from tests.e2e.released import operator_ports, start_deployed_operator
from tests.support.harness import spec_for, started, stop_operator, wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cluster


def test_helm_install_then_operator_as_the_chart_runs_it(
        kube_cluster: Any, emulators: Emulators, world: World, tmp_path: Path) -> None:
    helm = find_helm()
    release = f"rr{uuid.uuid4().hex[:6]}"
    namespace = f"chart-{release}"
    installed = subprocess.run(
        [str(helm), "install", release, "charts/reel-reconciler", "--namespace", namespace,
         "--create-namespace", "--kubeconfig", str(kube_cluster.kubeconfig), "--wait=false",
         "--set", f"watchNamespaces={{{namespace}}}", *operator_ports()],
        cwd=REPO, capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr
    assert "reconcile-requested-at" in installed.stdout, "NOTES.txt should say how to force"

    api = api_client(kube_cluster)
    fullname = f"{release}-reel-reconciler"
    pod = client.AppsV1Api(api).read_namespaced_deployment(fullname, namespace).spec.template.spec
    assert pod.service_account_name == fullname
    args = list(pod.containers[0].args)
    assert f"--namespace={namespace}" in args
    assert "--standalone" in args
    op = start_deployed_operator(kube_cluster, api, namespace, fullname, emulators.env(),
                                 tmp_path / "operator.log")
    try:
        op.create("main", spec_for(world))
        started(op, "main")
        _, paths = world.generated_project("stuck", status="generating", prompts=2, in_gcs=2,
                                           in_db=0, job_status="failed")
        wait_for(lambda: world.project("stuck")["status"] == "ready", 10,
                 f"the chart-installed operator\n{op.logs()}")
        assert world.project("stuck")["clipFilenames"] == paths
        assert "reel_reconciler_reconcile_total" in op.metrics()
    finally:
        stop_operator(op)
        subprocess.run([str(helm), "uninstall", release, "--namespace", namespace,
                        "--kubeconfig", str(kube_cluster.kubeconfig)],
                       capture_output=True, check=False)
