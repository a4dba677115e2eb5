"""Services inside the cluster: a ServiceAccount token, authenticated by the API server
(TokenReview) and authorized by it (SubjectAccessReview: `update` on the ReelReconciler's
`reconcile` subresource), so callers are granted access with an ordinary Role."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller import defaults
from controller.api.errors import ApiError, forbidden, unauthenticated, unavailable

GROUP = "reelmaker.io"
RESOURCE = "reelreconcilers"
SUBRESOURCE = "reconcile"
VERB = "update"
RETRY_AFTER = 5.0

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceCaller:
    username: str
    """As the API server names it: system:serviceaccount:NAMESPACE:NAME."""


class ServiceAccounts:
    def __init__(self, api: client.ApiClient, audiences: tuple[str, ...] = ()) -> None:
        self._authentication = client.AuthenticationV1Api(api)
        self._authorization = client.AuthorizationV1Api(api)
        self.audiences = audiences

    def authorize(self, token: str, namespace: str, name: str) -> ServiceCaller:
        """Who the token belongs to, if it may reconcile for this ReelReconciler; raises
        ApiError: 401, 403, or 503 when the API server cannot be asked."""
        # Bounded, so a caller whose review went out on a dead connection gets a 503, not a hang.
        timeout = defaults.KUBE_REQUEST_TIMEOUT.total_seconds()
        spec = client.V1TokenReviewSpec(token=token, audiences=list(self.audiences) or None)
        review = self._call(lambda: self._authentication.create_token_review(
            client.V1TokenReview(spec=spec), _request_timeout=timeout), "tokenreviews")
        status = review.status
        user = status.user if status is not None else None
        username = user.username if user is not None else None
        if status is None or not status.authenticated or user is None or not username:
            error = (status.error if status is not None else None) or "not authenticated"
            raise unauthenticated(f"the Kubernetes token was refused: {error}")
        attributes = client.V1ResourceAttributes(
            group=GROUP, resource=RESOURCE, subresource=SUBRESOURCE, verb=VERB,
            namespace=namespace, name=name)
        access = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=user.username, groups=user.groups, uid=user.uid, extra=user.extra,
            resource_attributes=attributes))
        decision = self._call(
            lambda: self._authorization.create_subject_access_review(
                access, _request_timeout=timeout),
            "subjectaccessreviews")
        if decision.status is None or not decision.status.allowed:
            raise forbidden(f"{username} may not {VERB} {RESOURCE}/{SUBRESOURCE} "
                            f"{name!r} in namespace {namespace!r}")
        return ServiceCaller(username)

    @staticmethod
    def _call(request: Callable[[], T], resource: str) -> T:
        try:
            return request()
        except ApiException as exc:
            if exc.status in (401, 403):
                raise ApiError(500, "misconfigured",
                               f"the reconciler may not create {resource} "
                               f"(HTTP {exc.status}): grant it create on "
                               f"{resource} (the chart's ClusterRole does)") from exc
            raise unavailable(f"the Kubernetes API server answered {exc.status} to "
                              f"{resource}", RETRY_AFTER) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise unavailable(f"the Kubernetes API server cannot be reached: {exc}",
                              RETRY_AFTER) from exc
