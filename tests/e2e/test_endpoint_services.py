"""The operator's reconcile endpoint with callers of both kinds, against the real
kube-apiserver (TokenReview, SubjectAccessReview) and the real emulators; and under a
flood, the reviews counted by the API server itself."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client

from devkit.emulators import Emulators, free_port
from devkit.seed import World
from tests.cluster.fixtures import eventually, service_account_kubeconfig
from tests.support import harness
from tests.support.endpoint import ANONYMOUS_401, error_of, refused_logins
from tests.support.harness import Cluster, Operator
from tests.support.patience import bound
from tests.support.tokens import TokenMint, published_keys

pytestmark = pytest.mark.cluster

NAME = "main"
CALLER_RULE = {"apiGroups": ["reelmaker.io"], "resources": ["reelreconcilers/reconcile"],
               "verbs": ["update"], "resourceNames": [NAME]}
"""What the chart's example caller Role grants: reconcile through this reconciler only."""
AUDIENCE = "reel-reconciler"
"""The audience the operator requires of ServiceAccount tokens by default."""


def _token(kubeconfig: Path) -> str:
    """The kubeconfig's token: bound to the API server's own audience."""
    token: str = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    return token


def _token_for(api: client.ApiClient, namespace: str, account: str,
               audience: str = AUDIENCE) -> str:
    """A token of the ServiceAccount bound to the reconciler's audience, as a projected
    volume with `audience: reel-reconciler` gives the caller's pods."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[audience], expiration_seconds=600))
    status = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, namespace, request).status
    assert status is not None
    assert status.token
    token: str = status.token
    return token


def _serve(kube_cluster: Any, cluster: Cluster, emulators: Emulators, world: World,
           tmp_path: Path, *args: str) -> Iterator[tuple[Operator, str, TokenMint]]:
    """The operator with the endpoint on, its ServiceAccount also bound to
    system:auth-delegator as the chart binds it when the endpoint is enabled."""
    service_account_kubeconfig(kube_cluster, "reel-reconciler", "reel-reconciler",
                               cluster_roles=["reel-reconciler", "system:auth-delegator"])
    port = free_port()
    with published_keys(TokenMint(emulators.gcp_project)) as mint:
        op = harness.start_operator(
            cluster, emulators.env(), tmp_path / "operator.log", "--standalone",
            "--api-port", str(port), "--api-firebase-certs-url", mint.certs_url, *args)
        try:
            op.create(NAME, harness.spec_for(world))
            harness.started(op, NAME)
            yield op, f"http://127.0.0.1:{port}", mint
        finally:
            harness.stop_operator(op)
            client.RbacAuthorizationV1Api(cluster.api).delete_cluster_role_binding(
                "reel-reconciler-reel-reconciler-system:auth-delegator")


@pytest.fixture
def served(kube_cluster: Any, cluster: Cluster, emulators: Emulators, world: World,
           tmp_path: Path) -> Iterator[tuple[Operator, str, TokenMint]]:
    """The default audience: no --api-token-audience."""
    yield from _serve(kube_cluster, cluster, emulators, world, tmp_path,
                      "--api-rate-limit", "600/minute")


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
    assert report["action"] == "corrected"
    assert report["missingClips"] == [paths[0]]
    assert world.project("p-svc")["clipFilenames"] == [None, paths[1]]
    missing = post("p-gone", allowed)
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found"

    # The caller's own token for the API server: not for us, so not accepted; nor one for
    # another audience.
    for token in (for_the_api_server,
                  _token_for(cluster.api, cluster.namespace, "caller", "another-service")):
        misaddressed = post("p-svc", token)
        assert misaddressed.status_code == 401, misaddressed.text
        assert error_of(misaddressed) == ANONYMOUS_401

    # A token the API server never issued, shaped like one of its own.
    forged = mint.published.sign({"iss": "https://kubernetes.default.svc",
                                  "sub": f"system:serviceaccount:{cluster.namespace}:caller"})
    unknown = post("p-svc", forged)
    assert unknown.status_code == 401
    assert error_of(unknown)["code"] == "unauthenticated"

    # End users on the same port: their own projects only.
    mine = post("p-svc", mint.token("alice"))
    assert mine.status_code == 200
    assert mine.json()["report"]["action"] == "no_change"
    assert post("p-svc", mint.token("bob")).status_code == 404
    text = op.metrics()
    for code in ("200", "403", "404"):
        assert harness.metric(text, "reel_reconciler_api_requests_total", caller="service",
                      code=code) >= 1, code
    reasons = {(line["callerKind"], line["reason"]) for line in refused_logins(op.log.read_text())}
    assert {("service", "forbidden"), ("service", "token_refused")} <= reasons, reasons


def _ok(answer: requests.Response) -> requests.Response:
    assert answer.status_code == 200, answer.text
    return answer


def _reviews(kubectl: Path, kube_cluster: Any) -> dict[str, float]:
    """POSTs to tokenreviews and subjectaccessreviews as the API server counts them."""
    text = subprocess.run([str(kubectl), "--kubeconfig", str(kube_cluster.kubeconfig), "get",
                           "--raw", "/metrics"], capture_output=True, text=True, check=True,
                          timeout=bound(30)).stdout
    return {resource: harness.metric(text, "apiserver_request_total", resource=resource,
                                     verb="POST")
            for resource in ("tokenreviews", "subjectaccessreviews")}


@pytest.fixture
def limited(kube_cluster: Any, cluster: Cluster, emulators: Emulators, world: World,
            tmp_path: Path) -> Iterator[tuple[Operator, str, TokenMint]]:
    """10 failed logins an hour per address; the tests play several clients behind a
    trusted proxy (loopback) with X-Forwarded-For."""
    yield from _serve(kube_cluster, cluster, emulators, world, tmp_path,
                      "--api-rate-limit", f"{LIMIT}/hour", "--api-trusted-proxies",
                      "127.0.0.0/8")


LIMIT = 10


def test_a_flood_costs_the_api_server_no_more_reviews_than_the_limit(
        kube_cluster: Any, kubectl: Path, cluster: Cluster, world: World,
        limited: tuple[Operator, str, TokenMint]) -> None:
    op, base, mint = limited

    def reviews() -> dict[str, float]:
        return _reviews(kubectl, kube_cluster)
    world.add_project("p-flood", user="alice")

    def post(client_address: str, token: str) -> int:
        return requests.post(f"{base}/api/reel/projects/p-flood/reconcile",
                             headers={"Authorization": f"Bearer {token}",
                                      "X-Forwarded-For": client_address},
                             timeout=bound(30)).status_code

    # 200 hostile requests, each a different JWT the API server would have to review.
    before = reviews()
    now = int(time.time())
    hostile = [post("198.51.100.1", mint.outsider.sign({
        "iss": "https://kubernetes.default.svc", "sub": f"system:serviceaccount:x:{i}",
        "aud": [AUDIENCE], "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}))
        for i in range(200)]
    assert hostile == [401] * LIMIT + [429] * (200 - LIMIT), hostile
    after = reviews()
    assert after["tokenreviews"] - before["tokenreviews"] <= LIMIT, (before, after)
    assert after["subjectaccessreviews"] == before["subjectaccessreviews"]

    # A ServiceAccount without the grant (403) is limited too, each token a new one.
    service_account_kubeconfig(kube_cluster, cluster.namespace, "bystander")
    before = reviews()
    forbidden = [post("198.51.100.2", _token_for(cluster.api, cluster.namespace, "bystander"))
                 for _ in range(LIMIT + 10)]
    assert forbidden == [403] * LIMIT + [429] * 10, forbidden
    after = reviews()
    assert after["tokenreviews"] - before["tokenreviews"] <= LIMIT, (before, after)
    assert after["subjectaccessreviews"] - before["subjectaccessreviews"] <= LIMIT

    # The same token again and again: one review, remembered (charged all the same).
    repeated = _token_for(cluster.api, cluster.namespace, "bystander")
    before = reviews()
    assert [post("198.51.100.3", repeated) for _ in range(5)] == [403] * 5
    after = reviews()
    assert after["tokenreviews"] - before["tokenreviews"] == 1, (before, after)

    # Meanwhile a caller with the grant, from another address, is served.
    service_account_kubeconfig(kube_cluster, cluster.namespace, "caller", rules=[CALLER_RULE])
    allowed = _token_for(cluster.api, cluster.namespace, "caller")
    assert eventually(lambda: _is(post("198.51.100.4", allowed), 200), timeout=bound(20))
    text = op.metrics()
    assert harness.metric(text, "reel_reconciler_api_refused_logins_total",
                          reason="rate_limited") == (200 - LIMIT) + 10
    assert "Traceback" not in op.log.read_text()


def _is(status: int, expected: int) -> bool:
    assert status == expected, status
    return True
