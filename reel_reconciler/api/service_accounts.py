"""Services inside the cluster: a ServiceAccount token, authenticated by the API server
(TokenReview) and authorized by it (SubjectAccessReview: `update` on the ReelReconciler's
`reconcile` subresource), so callers are granted access with an ordinary Role.

The token must be made for the reconciler: its audience one of `audiences` (by default
`reel-reconciler`), as the API server confirms in the review's `status.audiences`; a
caller's token for the API server itself is refused. Each review has a timeout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from reel_reconciler import defaults
from reel_reconciler.api.errors import ApiError, forbidden, unauthenticated, unavailable

GROUP = "reelmaker.io"
RESOURCE = "reelreconcilers"
SUBRESOURCE = "reconcile"
VERB = "update"
RETRY_AFTER = 5.0
DEFAULT_AUDIENCE = "reel-reconciler"
REQUEST_TIMEOUT = (defaults.KUBE_CONNECT_TIMEOUT.total_seconds(),
                   defaults.KUBE_REQUEST_TIMEOUT.total_seconds())
"""Seconds to connect to the API server, then to wait for its answer."""

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceCaller:
    username: str
    """As the API server names it: system:serviceaccount:NAMESPACE:NAME."""


class ServiceAccounts:
    def __init__(self, api: client.ApiClient,
                 audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)) -> None:
        if not audiences:
            raise ValueError("ServiceAccount tokens need an audience")
        self._authentication = client.AuthenticationV1Api(api)
        self._authorization = client.AuthorizationV1Api(api)
        self.audiences = audiences

    def authorize(self, token: str, namespace: str, name: str) -> ServiceCaller:
        """Who the token belongs to, if it may reconcile for this ReelReconciler; raises
        ApiError: 401, 403, or 503 when the API server cannot be asked (blocking: run it on
        the endpoint's threads)."""
        spec = client.V1TokenReviewSpec(token=token, audiences=list(self.audiences))
        review = self._call(lambda: self._authentication.create_token_review(
            client.V1TokenReview(spec=spec), _request_timeout=REQUEST_TIMEOUT),
            "tokenreviews")
        status = review.status
        user = status.user if status is not None else None
        username = user.username if user is not None else None
        if status is None or not status.authenticated or user is None or not username:
            error = (status.error if status is not None else None) or "not authenticated"
            raise unauthenticated(f"the Kubernetes token was refused: {error}",
                                  "token_refused")
        confirmed = set(status.audiences or ())
        if not confirmed or not confirmed <= set(self.audiences):
            raise unauthenticated(
                f"the Kubernetes token is not for {', '.join(self.audiences)} (the API "
                f"server confirms audiences {sorted(confirmed)})", "wrong_audience")
        attributes = client.V1ResourceAttributes(
            group=GROUP, resource=RESOURCE, subresource=SUBRESOURCE, verb=VERB,
            namespace=namespace, name=name)
        access = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=user.username, groups=user.groups, uid=user.uid, extra=user.extra,
            resource_attributes=attributes))
        decision = self._call(
            lambda: self._authorization.create_subject_access_review(
                access, _request_timeout=REQUEST_TIMEOUT),
            "subjectaccessreviews")
        if decision.status is None or not decision.status.allowed:
            raise forbidden(f"{username} may not {VERB} {RESOURCE}/{SUBRESOURCE} of the "
                            "ReelReconciler served here")
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
                               f"{resource} (the chart's ClusterRole does)",
                               reason="misconfigured") from exc
            raise unavailable(f"the Kubernetes API server answered {exc.status} to "
                              f"{resource}", RETRY_AFTER, "review_failed") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise unavailable(f"the Kubernetes API server cannot be reached: {exc}",
                              RETRY_AFTER, "review_failed") from exc
