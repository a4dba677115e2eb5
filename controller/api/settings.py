"""How the endpoint is served: one set of options for the operator and `watch`, checked
once (a bad value is one line naming the flag)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from limits import RateLimitItem, parse

from controller import defaults
from controller.config import ConfigError
from controller.usage import invalid, port_number

FIREBASE_CERTS_URL = (
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com")
"""Where Google publishes the keys that sign Firebase ID tokens."""


@dataclass(frozen=True)
class ApiSettings:
    port: int
    host: str = "0.0.0.0"
    reconciler: str | None = None
    """NAMESPACE/NAME of the ReelReconciler served; None: the only one running here."""
    firebase_project: str | None = None
    """The audience of end users' tokens; None: each reconciler's Firestore project."""
    firebase_certs_url: str = FIREBASE_CERTS_URL
    cors_origins: tuple[str, ...] = ()
    rate_limit: str = defaults.API_RATE_LIMIT
    service_accounts: bool = True
    """Accept Kubernetes ServiceAccount tokens (TokenReview, SubjectAccessReview)."""
    token_audiences: tuple[str, ...] = field(default_factory=tuple)
    """Audiences a ServiceAccount token must carry; empty: the API server's own."""

    def rate(self) -> RateLimitItem:
        return parse_rate(self.rate_limit, "--api-rate-limit")


def parse_rate(text: str, where: str) -> RateLimitItem:
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(invalid(where, "expected a rate such as 30/minute or 5/second",
                                  text)) from exc


def add_api_arguments(parser: argparse.ArgumentParser, service_accounts: bool) -> None:
    """The endpoint's flags, shared by `operator` and `watch`."""
    group = parser.add_argument_group("reconcile endpoint (off unless --api-port is given)")
    group.add_argument("--api-port", type=port_number, default=None, metavar="PORT",
                       help="serve POST /api/reel/projects/ID/reconcile and /openapi.json "
                       "on this port")
    if service_accounts:
        group.add_argument("--api-reconciler", default=None, metavar="NAMESPACE/NAME",
                           help="the ReelReconciler the endpoint serves (default: the only "
                           "one running)")
    group.add_argument("--api-firebase-project", default=None, metavar="PROJECT",
                       help="audience of Firebase ID tokens (default: the Firestore project)")
    group.add_argument("--api-firebase-certs-url", default=FIREBASE_CERTS_URL, metavar="URL",
                       help="where the token signing keys are published (default: Google's)")
    group.add_argument("--api-cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="allow browsers on this origin (repeatable; default: no CORS)")
    group.add_argument("--api-rate-limit", default=defaults.API_RATE_LIMIT, metavar="RATE",
                       help="requests per caller (default: %(default)s)")
    if service_accounts:
        group.add_argument("--api-token-audience", action="append", default=[],
                           metavar="AUDIENCE",
                           help="audience ServiceAccount tokens must carry (repeatable; "
                           "default: the API server's)")
    else:
        group.add_argument("--api-service-accounts", action="store_true",
                           help="also accept Kubernetes ServiceAccount tokens, authorized for "
                           "--api-reconciler NAMESPACE/NAME (needs a kubeconfig)")
        group.add_argument("--api-reconciler", default=None, metavar="NAMESPACE/NAME",
                           help="the ReelReconciler whose 'reconcile' subresource service "
                           "callers must be allowed to update")


def api_settings(args: argparse.Namespace, service_accounts: bool | None = None) -> (
        ApiSettings | None):
    """The endpoint's settings from parsed flags; None when --api-port is not given."""
    if args.api_port is None:
        return None
    accounts = service_accounts if service_accounts is not None else args.api_service_accounts
    reconciler = args.api_reconciler
    if reconciler is not None and reconciler.count("/") != 1:
        raise ConfigError(invalid("--api-reconciler", "expected NAMESPACE/NAME", reconciler))
    if accounts and service_accounts is None and reconciler is None:
        raise ConfigError("--api-service-accounts needs --api-reconciler NAMESPACE/NAME: the "
                          "ReelReconciler service callers must be allowed to reconcile")
    settings = ApiSettings(
        port=args.api_port, reconciler=reconciler,
        firebase_project=args.api_firebase_project,
        firebase_certs_url=args.api_firebase_certs_url,
        cors_origins=tuple(args.api_cors_origin), rate_limit=args.api_rate_limit,
        service_accounts=accounts,
        token_audiences=tuple(getattr(args, "api_token_audience", ())))
    settings.rate()
    return settings
