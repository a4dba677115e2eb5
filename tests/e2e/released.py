"""A Helm release in the real kube-apiserver, and its pods played by local processes: no kubelet
runs here, so a test runs a pod's container command itself, with the pod's ServiceAccount,
arguments and environment as the chart rendered them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes import client

from devkit.emulators import free_port
from tests.cluster.cluster import kubeconfig_dict, write_kubeconfig
from tests.cluster.fixtures import api_client
from tests.support.harness import REPO, Operator


def token_kubeconfig(kube_cluster: Any, namespace: str, account: str) -> Path:
    """A kubeconfig for a ServiceAccount of the release (a bound TokenRequest token)."""
    with api_client(kube_cluster) as api:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
        token = client.CoreV1Api(api).create_namespaced_service_account_token(
            account, namespace, request).status.token or ""
    config = kubeconfig_dict(kube_cluster.server, kube_cluster.ca_file, {"token": token},
                             f"{namespace}-{account}")
    return write_kubeconfig(kube_cluster.state_dir / "sa" / f"{namespace}-{account}.kubeconfig",
                            config)


def pod_env(container: client.V1Container) -> dict[str, str]:
    return {e.name: e.value for e in container.env or [] if e.value is not None}


def start_deployed_operator(kube_cluster: Any, api: client.ApiClient, namespace: str,
                            fullname: str, env: dict[str, str], log: Path) -> Operator:
    """The operator as the chart's Deployment runs it: its args and env, its ServiceAccount.
    The image's entrypoint is `reel-reconciler operator`; the chart adds `args`."""
    deployment = client.AppsV1Api(api).read_namespaced_deployment(fullname, namespace)
    pod = deployment.spec.template.spec
    [container] = pod.containers
    args = list(container.args)
    metrics_port = int(next(a for a in args if a.startswith("--metrics-port=")).split("=")[1])
    kubeconfig = token_kubeconfig(kube_cluster, namespace, pod.service_account_name)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reel_reconciler.cli", "operator", *args],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **pod_env(container), **env, "KUBECONFIG": str(kubeconfig)})
    return Operator(namespace, client.CustomObjectsApi(api), client.CoreV1Api(api),
                    metrics_port, proc, log)


def operator_ports() -> list[str]:
    """Free ports for the operator's metrics and health endpoints, as helm --set flags."""
    return ["--set", f"operator.metricsPort={free_port()}",
            "--set", f"operator.healthPort={free_port()}"]
