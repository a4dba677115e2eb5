"""pytest fixtures and helpers around the test control plane in cluster.py.

Import the fixtures into a conftest.py (see tests/e2e/conftest.py).  The
session fixture reuses a running cluster (from ``make cluster-up`` or another
test session) and stops only one started by a test session, once no session
uses it any more.  It never builds: unbuilt binaries (``make cluster-up`` builds
them, about 10 minutes the first time) or a missing Go toolchain fail the tests
that need the cluster, with the reason; it never turns into a skip.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from devkit.kubectl import KubectlNotFound, find_kubectl
from tests.cluster.cluster import (
    Cluster,
    ClusterError,
    kubeconfig_dict,
    release,
    up,
    write_kubeconfig,
)

T = TypeVar("T")
# Policy rules as client models or plain dicts in the API's JSON spelling (apiGroups, ...).
Rule = client.V1PolicyRule | Mapping[str, Any]


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[Cluster]:
    """A running etcd + kube-apiserver; yields its Cluster (``.kubeconfig`` is admin)."""
    failure = ""
    try:
        cluster = up(session=True, may_build=False)
    except ClusterError as exc:
        failure = str(exc)
    if failure:
        pytest.fail(
            f"kube_cluster could not start the test control plane: {failure}", pytrace=False
        )
    yield cluster
    release()


@pytest.fixture(scope="session")
def kubectl() -> Path:
    """Path of a working kubectl (installed, or unpacked from the PyPI wheel)."""
    failure = ""
    try:
        return find_kubectl()
    except KubectlNotFound as exc:
        failure = str(exc)
    pytest.fail(f"no kubectl: {failure}", pytrace=False)


def api_client(kubeconfig: Path | Cluster) -> client.ApiClient:
    """An ApiClient for a kubeconfig file (or a Cluster's admin kubeconfig)."""
    path = kubeconfig.kubeconfig if isinstance(kubeconfig, Cluster) else kubeconfig
    api: client.ApiClient = config.new_client_from_config(config_file=str(path))
    return api


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.2) -> T:
    """Retry check() until it stops raising; RBAC and watch caches apply changes async."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, ApiException):
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval)


def _create_or_replace(
    create: Callable[[], object], replace: Callable[[], object] | None = None
) -> None:
    """Create an object; if it already exists (a rerun), replace it or keep it."""
    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise
        if replace:
            replace()


def ensure_namespace(api: client.ApiClient, namespace: str) -> None:
    """Create the namespace unless it exists."""
    core = client.CoreV1Api(api)
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    _create_or_replace(lambda: core.create_namespace(body))


def _policy_rule(rule: Rule) -> client.V1PolicyRule:
    """Accept rules as client models or as dicts in the API's JSON spelling."""
    if isinstance(rule, client.V1PolicyRule):
        return rule
    parsed = client.V1PolicyRule.from_dict(dict(rule))
    if parsed is None:
        raise ValueError(f"not a policy rule: {rule!r}")
    return parsed


def service_account_kubeconfig(
    cluster: Cluster,
    namespace: str,
    name: str,
    *,
    cluster_roles: Sequence[str] = (),
    roles: Sequence[str] = (),
    rules: Sequence[Rule] = (),
    cluster_rules: Sequence[Rule] = (),
    expiration_seconds: int = 3600,
) -> Path:
    """Create ServiceAccount namespace/name with the given permissions and no others.

    Returns a kubeconfig that authenticates as it with a bound token from the
    TokenRequest API, so a test can run code with the permissions a Helm chart
    would grant (plus the discovery access every authenticated user has).
    Bindings take effect asynchronously: retry the first call with ``eventually``.

    - ``cluster_roles``: ClusterRoles bound cluster-wide (ClusterRoleBinding).
    - ``roles``: Roles in ``namespace`` bound with a RoleBinding; ``"ClusterRole/x"``
      binds ClusterRole x in ``namespace`` only.
    - ``rules`` / ``cluster_rules``: policy rules put into a new Role / ClusterRole
      and bound the same way.
    """
    meta = client.V1ObjectMeta
    with api_client(cluster) as api:
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        ensure_namespace(api, namespace)
        account = client.V1ServiceAccount(metadata=meta(name=name))
        _create_or_replace(lambda: core.create_namespaced_service_account(namespace, account))
        subjects = [client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)]

        def role_ref(kind: str, role_name: str) -> client.V1RoleRef:
            return client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind=kind, name=role_name
            )

        def bind_cluster(role_name: str) -> None:
            binding = f"{namespace}-{name}-{role_name}"
            body = client.V1ClusterRoleBinding(
                metadata=meta(name=binding),
                role_ref=role_ref("ClusterRole", role_name),
                subjects=subjects,
            )
            _create_or_replace(
                lambda: rbac.create_cluster_role_binding(body),
                lambda: rbac.replace_cluster_role_binding(binding, body),
            )

        def bind_namespaced(kind: str, role_name: str) -> None:
            binding = f"{name}-{kind.lower()}-{role_name}"
            body = client.V1RoleBinding(
                metadata=meta(name=binding, namespace=namespace),
                role_ref=role_ref(kind, role_name),
                subjects=subjects,
            )
            _create_or_replace(
                lambda: rbac.create_namespaced_role_binding(namespace, body),
                lambda: rbac.replace_namespaced_role_binding(binding, namespace, body),
            )

        if rules:
            role_name = f"{name}-rules"
            role = client.V1Role(
                metadata=meta(name=role_name), rules=[_policy_rule(r) for r in rules]
            )
            _create_or_replace(
                lambda: rbac.create_namespaced_role(namespace, role),
                lambda: rbac.replace_namespaced_role(role_name, namespace, role),
            )
            bind_namespaced("Role", role_name)
        if cluster_rules:
            cluster_role_name = f"{namespace}-{name}-rules"
            cluster_role = client.V1ClusterRole(
                metadata=meta(name=cluster_role_name),
                rules=[_policy_rule(r) for r in cluster_rules],
            )
            _create_or_replace(
                lambda: rbac.create_cluster_role(cluster_role),
                lambda: rbac.replace_cluster_role(cluster_role_name, cluster_role),
            )
            bind_cluster(cluster_role_name)
        for role_name in cluster_roles:
            bind_cluster(role_name)
        for ref in roles:
            kind, _, role_name = ref.rpartition("/")
            bind_namespaced(kind or "Role", role_name)

        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        issued = core.create_namespaced_service_account_token(name, namespace, request)
    if issued.status is None or not issued.status.token:
        raise RuntimeError(f"TokenRequest for {namespace}/{name} returned no token")

    user = {"token": issued.status.token}
    config_dict = kubeconfig_dict(cluster.server, cluster.ca_file, user, f"{namespace}-{name}")
    return write_kubeconfig(
        cluster.state_dir / "sa" / f"{namespace}-{name}.kubeconfig", config_dict
    )
