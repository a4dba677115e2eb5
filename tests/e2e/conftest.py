"""The control-plane fixtures of tests/cluster, for the end-to-end tests, and a namespace
with the shipped CRD and RBAC for each test."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.fixtures import (
    api_client,
    ensure_namespace,
    kube_cluster,
    kubectl,
    service_account_kubeconfig,
)
from tests.support.harness import REPO, Cluster, wait_for

__all__ = ["cluster", "kube_cluster", "kubectl"]


@pytest.fixture
def cluster(kube_cluster: Any, kubectl: Path) -> Iterator[Cluster]:
    admin = str(kube_cluster.kubeconfig)
    api = api_client(kube_cluster)
    ensure_namespace(api, "reel-reconciler")
    for manifest in ("deploy/crds", "deploy/rbac.yaml"):
        applied = subprocess.run([str(kubectl), "--kubeconfig", admin, "apply", "-f", manifest],
                                 cwd=REPO, capture_output=True, text=True, check=False)
        assert applied.returncode == 0, applied.stderr
    namespace = f"rr-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    wait_for(lambda: client.ApiextensionsV1Api(api).read_custom_resource_definition(
        "reelreconcilers.reelmaker.io").status.accepted_names.kind, 20, "the CRD")
    kubeconfig = service_account_kubeconfig(kube_cluster, "reel-reconciler", "reel-reconciler",
                                            cluster_roles=["reel-reconciler"])
    yield Cluster(namespace, kubeconfig, api)
    core.delete_namespace(namespace)
