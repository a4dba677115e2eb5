"""The control-plane fixtures of tests/cluster, for the end-to-end tests."""

from tests.cluster.fixtures import kube_cluster, kubectl

__all__ = ["kube_cluster", "kubectl"]
