"""`helm install` into the real kube-apiserver, then the operator exactly as the chart's
Deployment would run it (its args and env), authenticated as the chart's ServiceAccount with
the chart's RBAC, reconciles a stuck project end to end. (No kubelet runs here, so the pod
itself is this local process.)"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.cluster import kubeconfig_dict, write_kubeconfig
from tests.cluster.fixtures import api_client
from tests.cluster.kubectl import find_helm
from tests.support.emulators import Emulators, free_port
from tests.support.harness import Operator, spec_for, started, stop_operator, wait_for
from tests.support.seed import World

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cluster


def _token_kubeconfig(kube_cluster: Any, namespace: str, account: str) -> Path:
    """A kubeconfig for the chart's own ServiceAccount (a bound TokenRequest token)."""
    with api_client(kube_cluster) as api:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
        token = client.CoreV1Api(api).create_namespaced_service_account_token(
            account, namespace, request).status.token or ""
    config = kubeconfig_dict(kube_cluster.server, kube_cluster.ca_file, {"token": token},
                             f"{namespace}-{account}")
    return write_kubeconfig(kube_cluster.state_dir / "sa" / f"chart-{namespace}.kubeconfig",
                            config)


def test_helm_install_then_operator_as_the_chart_runs_it(
        kube_cluster: Any, emulators: Emulators, world: World, tmp_path: Path) -> None:
    helm = find_helm()
    release = f"rr{uuid.uuid4().hex[:6]}"
    namespace = f"chart-{release}"
    metrics_port, health_port = free_port(), free_port()
    installed = subprocess.run(
        [str(helm), "install", release, "charts/reel-reconciler", "--namespace", namespace,
         "--create-namespace", "--kubeconfig", str(kube_cluster.kubeconfig), "--wait=false",
         "--set", f"watchNamespaces={{{namespace}}}",
         "--set", f"operator.metricsPort={metrics_port}",
         "--set", f"operator.healthPort={health_port}"],
        cwd=REPO, capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr
    assert "reconcile-requested-at" in installed.stdout, "NOTES.txt should say how to force"

    api = api_client(kube_cluster)
    fullname = f"{release}-reel-reconciler"
    deployment = client.AppsV1Api(api).read_namespaced_deployment(fullname, namespace)
    pod = deployment.spec.template.spec
    [container] = pod.containers
    assert pod.service_account_name == fullname
    args = list(container.args)
    assert f"--namespace={namespace}" in args and "--standalone" in args
    env = {e.name: e.value for e in container.env or [] if e.value is not None}

    kubeconfig = _token_kubeconfig(kube_cluster, namespace, fullname)
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        # The image's entrypoint is `reel-reconciler operator`; the chart adds `args`.
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "operator", *args],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **env, **emulators.env(), "KUBECONFIG": str(kubeconfig)})
    op = Operator(namespace, client.CustomObjectsApi(api), client.CoreV1Api(api),
                  metrics_port, proc, log)
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
