"""The operator's reconcile endpoint with callers of both kinds, against the real
kube-apiserver (TokenReview, SubjectAccessReview) and the real emulators."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client

from tests.cluster.fixtures import eventually, service_account_kubeconfig
from tests.support import harness
from tests.support.emulators import Emulators, free_port
from tests.support.endpoint import error_of
from tests.support.harness import Cluster, Operator
from tests.support.patience import bound
from tests.support.seed import World
from tests.support.tokens import TokenMint, published_keys

pytestmark = pytest.mark.cluster

NAME = "main"
CALLER_RULE = {"apiGroups": ["reelmaker.io"], "resources": ["reelreconcilers/reconcile"],
               "verbs": ["update"], "resourceNames": [NAME]}
"""What the chart's example caller Role grants: reconcile through this reconciler only."""
AUDIENCE = "reel-reconciler"
"""The audience the operator requires of ServiceAccount tokens (--api-token-audience)."""


def _token(kubeconfig: Path) -> str:
    """The kubeconfig's token: bound to the API server's own audience."""
    token: str = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    return token


def _token_for(api: client.ApiClient, namespace: str, account: str) -> str:
    """A token of the ServiceAccount bound to the reconciler's audience, as a projected
    volume with `audience: reel-reconciler` gives the caller's pods."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[AUDIENCE], expiration_seconds=600))
    status = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, namespace, request).status
    assert status is not None and status.token
    token: str = status.token
    return token


@pytest.fixture
def served(kube_cluster: Any, cluster: Cluster, emulators: Emulators, world: World,
           tmp_path: Path) -> Iterator[tuple[Operator, str, TokenMint]]:
    """The operator with the endpoint on, its ServiceAccount also bound to
    system:auth-delegator as the chart binds it when the endpoint is enabled."""
    service_account_kubeconfig(kube_cluster, "reel-reconciler", "reel-reconciler",
                               cluster_roles=["reel-reconciler", "system:auth-delegator"])
    port = free_port()
    with published_keys(TokenMint(emulators.gcp_project)) as mint:
        op = harness.start_operator(
            cluster, emulators.env(), tmp_path / "operator.log", "--standalone",
            "--api-port", str(port), "--api-firebase-certs-url", mint.certs_url,
            "--api-rate-limit", "600/minute", "--api-token-audience", AUDIENCE)
        try:
            op.create(NAME, harness.spec_for(world))
            harness.started(op, NAME)
            yield op, f"http://127.0.0.1:{port}", mint
        finally:
            harness.stop_operator(op)
            client.RbacAuthorizationV1Api(cluster.api).delete_cluster_role_binding(
                "reel-reconciler-reel-reconciler-system:auth-delegator")


def test_service_callers_need_the_reconcile_subresource(
        kube_cluster: Any, cluster: Cluster, world: World,
        served: tuple[Operator, str, TokenMint]) -> None:
    op, base, mint = served
    _, paths = world.generated_project("p-svc", user="alice", status="ready", prompts=2,
                                       in_gcs=2, in_db=2)
    world.delete_object(paths[0])
    for_the_api_server = _token(service_account_kubeconfig(
        kube_cluster, cluster.namespace, "caller", rules=[CALLER_RULE]))
    allowed = _token_for(cluster.api, cluster.namespace, "caller")
    service_account_kubeconfig(kube_cluster, cluster.namespace, "bystander")
    other = _token_for(cluster.api, cluster.namespace, "bystander")

    def post(project_id: str, token: str) -> requests.Response:
        return requests.post(f"{base}/api/reel/projects/{project_id}/reconcile",
                             headers={"Authorization": f"Bearer {token}"}, timeout=bound(30))

    before = world.update_time("p-svc")
    refused = post("p-svc", other)
    assert refused.status_code == 403, refused.text
    assert error_of(refused)["code"] == "forbidden"
    assert "reelreconcilers/reconcile" in error_of(refused)["message"]
    assert world.update_time("p-svc") == before

    # RBAC bindings take effect asynchronously: the first call may still be refused.
    answer = eventually(lambda: _ok(post("p-svc", allowed)), timeout=bound(20))
    report = answer.json()["report"]
    assert report["action"] == "corrected" and report["missingClips"] == [paths[0]]
    assert world.project("p-svc")["clipFilenames"] == [None, paths[1]]
    missing = post("p-gone", allowed)
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"

    # The caller's own token for the API server: not for us, so not accepted.
    misaddressed = post("p-svc", for_the_api_server)
    assert misaddressed.status_code == 401, misaddressed.text
    assert "token was refused" in error_of(misaddressed)["message"]

    # A token the API server never issued, shaped like one of its own.
    forged = mint.published.sign({"iss": "https://kubernetes.default.svc",
                                  "sub": f"system:serviceaccount:{cluster.namespace}:caller"})
    unknown = post("p-svc", forged)
    assert unknown.status_code == 401 and error_of(unknown)["code"] == "unauthenticated"

    # End users on the same port: their own projects only.
    mine = post("p-svc", mint.token("alice"))
    assert mine.status_code == 200 and mine.json()["report"]["action"] == "no_change"
    assert post("p-svc", mint.token("bob")).status_code == 404
    text = op.metrics()
    for code in ("200", "403", "404"):
        assert harness.metric(text, "reel_reconciler_api_requests_total", caller="service",
                      code=code) >= 1, code


def _ok(answer: requests.Response) -> requests.Response:
    assert answer.status_code == 200, answer.text
    return answer
