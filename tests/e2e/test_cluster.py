"""The test control plane behaves like a real cluster.

These pin down what later operator tests rely on: CRD schema validation and
the status subresource, watches, RBAC enforcement for ServiceAccounts, and a
kubectl that talks to the cluster.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from devkit.kubectl import wheel_kubectl
from tests.cluster.cluster import Cluster
from tests.cluster.fixtures import (
    api_client,
    ensure_namespace,
    eventually,
    service_account_kubeconfig,
)

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "test.example.io", "v1", "widgets"
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "required": ["spec"],
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {"type": "string", "enum": ["red", "green", "blue"]},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "observedSize": {"type": "integer"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, size: object, color: str = "red") -> dict[str, Any]:
    """A Widget manifest."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size, "color": color},
    }


def as_dict(value: object) -> dict[str, Any]:
    """CustomObjectsApi returns untyped JSON; check it is an object."""
    assert isinstance(value, dict), value
    return value


class Widgets:
    """Typed access to Widgets in one namespace through CustomObjectsApi."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = client.CustomObjectsApi(api)
        self.args = (GROUP, VERSION, namespace, PLURAL)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return as_dict(self.api.create_namespaced_custom_object(*self.args, body))

    def list(self) -> dict[str, Any]:
        return as_dict(self.api.list_namespaced_custom_object(*self.args))

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return as_dict(self.api.patch_namespaced_custom_object(*self.args, name, body))

    def patch_status(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return as_dict(self.api.patch_namespaced_custom_object_status(*self.args, name, body))


@pytest.fixture(scope="module")
def admin(kube_cluster: Cluster) -> Iterator[client.ApiClient]:
    """Admin ApiClient with the Widget CRD installed and established."""
    crd = client.V1CustomResourceDefinition.from_dict(WIDGET_CRD)
    assert crd is not None
    with api_client(kube_cluster) as api:
        ext = client.ApiextensionsV1Api(api)
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise

        def established() -> None:
            found = ext.read_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
            assert found.status is not None
            conditions = {c.type: c.status for c in found.status.conditions or []}
            assert conditions.get("Established") == "True", conditions
            client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL)

        eventually(established, timeout=30)
        yield api


@pytest.fixture
def namespace(admin: client.ApiClient) -> str:
    """A fresh namespace per test; no namespace controller runs, so none is deleted."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    ensure_namespace(admin, name)
    return name


def _forbidden(call: Callable[..., object], *args: object) -> None:
    with pytest.raises(ApiException) as info:
        call(*args)
    assert info.value.status == 403, info.value.body


def test_crd_rejects_objects_that_violate_the_schema(
    admin: client.ApiClient, namespace: str
) -> None:
    widgets = Widgets(admin, namespace)
    assert widgets.create(widget("ok", 3))["spec"] == {"size": 3, "color": "red"}

    for bad in (widget("too-big", 11), widget("wrong-type", "big"), widget("bad-enum", 2, "pink")):
        with pytest.raises(ApiException) as info:
            widgets.create(bad)
        assert info.value.status == 422, info.value.body
        assert "spec." in str(info.value.body)


def test_status_subresource_is_separate_from_spec(admin: client.ApiClient, namespace: str) -> None:
    widgets = Widgets(admin, namespace)
    created = widgets.create(widget("w", 2))
    assert "status" not in created
    generation = created["metadata"]["generation"]

    patched = widgets.patch_status(
        "w", {"status": {"phase": "Ready", "observedSize": 2}, "spec": {"size": 9}}
    )
    assert patched["status"] == {"phase": "Ready", "observedSize": 2}
    assert patched["spec"]["size"] == 2, "the /status endpoint must ignore spec"
    assert patched["metadata"]["generation"] == generation

    changed = widgets.patch("w", {"spec": {"size": 5}, "status": {"phase": "Hijacked"}})
    assert changed["spec"]["size"] == 5
    assert changed["status"]["phase"] == "Ready", "the main endpoint must ignore status"
    assert changed["metadata"]["generation"] == generation + 1


def test_watch_receives_added_and_modified(admin: client.ApiClient, namespace: str) -> None:
    widgets = Widgets(admin, namespace)
    start = widgets.list()["metadata"]["resourceVersion"]
    events: list[tuple[str, str, int]] = []
    watcher = watch.Watch()

    def consume() -> None:
        # Starting at the list's resourceVersion: no event can slip in before the watch opens.
        stream = watcher.stream(
            widgets.api.list_namespaced_custom_object,
            *widgets.args,
            resource_version=start,
            timeout_seconds=20,
        )
        for event in stream:
            obj = as_dict(event["object"])
            events.append((event["type"], obj["metadata"]["name"], obj["spec"]["size"]))
            if len(events) == 2:
                watcher.stop()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    widgets.create(widget("watched", 1))
    widgets.patch("watched", {"spec": {"size": 4}})
    thread.join(25)
    assert not thread.is_alive(), f"watch did not deliver two events, got {events}"
    assert events == [("ADDED", "watched", 1), ("MODIFIED", "watched", 4)]


def test_rbac_denies_until_a_role_is_bound(kube_cluster: Cluster, namespace: str) -> None:
    bare = service_account_kubeconfig(kube_cluster, namespace, "operator")
    with api_client(bare) as api:
        _forbidden(Widgets(api, namespace).list)

    read_widgets = {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]}
    granted = service_account_kubeconfig(kube_cluster, namespace, "operator", rules=[read_widgets])
    with api_client(granted) as api:
        widgets = Widgets(api, namespace)
        assert eventually(widgets.list)["items"] == []
        _forbidden(widgets.create, widget("nope", 1))
        _forbidden(Widgets(api, "default").list)
        _forbidden(client.CoreV1Api(api).list_namespaced_secret, namespace)


def test_cluster_role_binding_grants_cluster_wide_access(
    kube_cluster: Cluster, admin: client.ApiClient, namespace: str
) -> None:
    role_name = f"{namespace}-namespace-reader"
    rule = client.V1PolicyRule(api_groups=[""], resources=["namespaces"], verbs=["get", "list"])
    client.RbacAuthorizationV1Api(admin).create_cluster_role(
        client.V1ClusterRole(metadata=client.V1ObjectMeta(name=role_name), rules=[rule])
    )
    outsider = service_account_kubeconfig(kube_cluster, namespace, "outsider")
    with api_client(outsider) as api:
        _forbidden(client.CoreV1Api(api).list_namespace)

    reader = service_account_kubeconfig(
        kube_cluster, namespace, "reader", cluster_roles=[role_name]
    )
    inline = client.V1PolicyRule(api_groups=[""], resources=["namespaces"], verbs=["list"])
    ruled = service_account_kubeconfig(kube_cluster, namespace, "ruled", cluster_rules=[inline])
    for kubeconfig in (reader, ruled):
        with api_client(kubeconfig) as api:
            core = client.CoreV1Api(api)

            def names(core: client.CoreV1Api = core) -> list[str | None]:
                return [
                    n.metadata.name if n.metadata else None for n in core.list_namespace().items
                ]

            assert namespace in eventually(names)
            _forbidden(core.delete_namespace, namespace)


def test_token_kubeconfig_identifies_the_service_account(
    kube_cluster: Cluster, namespace: str
) -> None:
    path = service_account_kubeconfig(kube_cluster, namespace, "whoami")
    with api_client(path) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
    assert review.status is not None
    assert review.status.user_info is not None
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:whoami"


def _kubectl_readyz(kubectl: Path, cluster: Cluster) -> None:
    result = subprocess.run(
        [str(kubectl), "--kubeconfig", str(cluster.kubeconfig), "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_kubectl_get_raw_readyz(kube_cluster: Cluster, kubectl: Path) -> None:
    _kubectl_readyz(kubectl, kube_cluster)


def test_kubectl_from_pypi_wheel_works(kube_cluster: Cluster) -> None:
    """The fallback for machines without kubectl must work too, not only the system one."""
    _kubectl_readyz(wheel_kubectl(), kube_cluster)
